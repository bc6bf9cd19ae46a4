// HTML by tagged template: every interpolated value is escaped unless it is already SafeHtml (the result
// of another html`` call), so a product name or a session id can never inject markup.

export class SafeHtml {
  constructor(readonly value: string) {}
  toString(): string {
    return this.value;
  }
}

const ESCAPES: Readonly<Record<string, string>> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ESCAPES[c] ?? c);
}

function render(value: unknown): string {
  if (value instanceof SafeHtml) return value.value;
  if (Array.isArray(value)) return value.map(render).join('');
  if (value === undefined || value === null || value === false) return '';
  return escapeHtml(String(value));
}

export function html(strings: TemplateStringsArray, ...values: unknown[]): SafeHtml {
  let out = strings[0] ?? '';
  values.forEach((value, i) => { out += render(value) + (strings[i + 1] ?? ''); });
  return new SafeHtml(out);
}

// ---- formatting shared by the views ----------------------------------------------------------------

/** The first 8 characters: enough to tell sessions apart on screen, never enough to use one. */
export const shortId = (id: string): string => id.slice(0, 8);

export const money = (cents: number): string => `$${(cents / 100).toFixed(2)}`;

const TIME = new Intl.DateTimeFormat('en-GB', { hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false });
const DATE_TIME = new Intl.DateTimeFormat('en-GB', { day: 'numeric', month: 'short', hour: '2-digit', minute: '2-digit', hour12: false });

export const clockTime = (ms: number): string => TIME.format(ms);
export const dateTime = (ms: number): string => DATE_TIME.format(ms);

/** "42 s", "3 min", "2 h 5 min". */
export function duration(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s} s`;
  const min = Math.floor(s / 60);
  if (min < 60) return `${min} min`;
  return `${Math.floor(min / 60)} h ${min % 60} min`;
}

export const plural = (n: number, one: string, many = `${one}s`): string => `${n} ${n === 1 ? one : many}`;

/** Why a session closed, in words. */
export const REASON_TEXT: Readonly<Record<string, string>> = {
  evicted: 'evicted to make room for a new session',
  timeout: 'timed out after inactivity',
  closed: 'closed',
  shutdown: 'closed when the server stopped',
};
