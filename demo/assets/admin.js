// Live admin console: re-fetches the server-rendered live region every 2 s (polling, not SSE: an open
// event stream would keep the console's own session busy, so it could never time out, and would queue
// its Close and Apply requests behind the stream, since a legacy session runs one request at a time).
const live = document.getElementById('live');
const status = document.getElementById('live-status');

async function refresh() {
  if (document.hidden || live === null) return;
  try {
    const response = await fetch('/admin/live', { cache: 'no-store' });
    if (response.status === 401) return location.reload();
    if (!response.ok) throw new Error(String(response.status));
    live.innerHTML = await response.text();
    status.textContent = 'Live';
    status.className = 'live';
  } catch {
    status.textContent = 'Paused: server unreachable';
    status.className = 'live off';
  }
}

setInterval(refresh, 2000);
document.addEventListener('visibilitychange', refresh);
