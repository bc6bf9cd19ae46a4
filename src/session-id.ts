import { randomFillSync } from 'node:crypto';

// Session ids are random UUIDs (version 4: 122 random bits from the system's CSPRNG), written into one
// buffer and decoded once. `crypto.randomUUID()` builds its string by concatenating 20 pieces, which V8
// keeps as a tree of 14 cons strings: 480 bytes held by every live session, where a flat 36-character
// string takes 56. The entropy is drawn 256 ids at a time, as randomUUID itself does.

const IDS_PER_DRAW = 256;
const ID_BYTES = 16;
const entropy = Buffer.alloc(ID_BYTES * IDS_PER_DRAW);
let nextId = IDS_PER_DRAW;
// Buffer.alloc, never pooled: Buffer.from of a short string lands in Node's shared 8 KiB pool, where any
// small Buffer made later (and its `.buffer`) would carry the newest id along.
const text = Buffer.alloc(36, '00000000-0000-4000-8000-000000000000', 'latin1');
const HEX_DIGITS = Buffer.from('0123456789abcdef', 'latin1');
/** Where the two hex digits of each byte go in the text (the dashes stay). */
const DIGIT_OFFSETS = [0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34] as const;

/** What newSessionId writes: 36 characters, lower-case hex digits with dashes in a UUID's places. */
const SESSION_ID_SHAPE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** `value` if it could be an id newSessionId wrote, else undefined (a client's cookie value before a store puts it into a key name). */
export function shapedSessionId(value: string | undefined): string | undefined {
  return value !== undefined && value.length === 36 && SESSION_ID_SHAPE.test(value) ? value : undefined;
}

/** A new random session id, `xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx` (RFC 9562 version 4), as a flat string. */
export function newSessionId(): string {
  if (nextId === IDS_PER_DRAW) {
    randomFillSync(entropy);
    nextId = 0;
  }
  const base = ID_BYTES * nextId++;
  entropy[base + 6] = (entropy[base + 6]! & 0x0f) | 0x40; // version 4
  entropy[base + 8] = (entropy[base + 8]! & 0x3f) | 0x80; // variant 10xx
  for (let i = 0; i < ID_BYTES; i++) {
    const byte = entropy[base + i]!;
    const at = DIGIT_OFFSETS[i]!;
    text[at] = HEX_DIGITS[byte >> 4]!;
    text[at + 1] = HEX_DIGITS[byte & 0x0f]!;
  }
  return text.toString('latin1');
}
