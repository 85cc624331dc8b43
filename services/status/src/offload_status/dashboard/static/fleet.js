// The worker registry (GET /v1/workers): every worker process with its heartbeat, what it runs and
// what it has done; lost ones (no heartbeat for the lost-after window) stay listed for a while.
// And the warnings of GET /v1/queues: work queued for a type that has no live worker.
// Text nodes only: nothing from the API becomes markup.

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value !== null && value !== undefined && value !== false) node.setAttribute(name, String(value));
  }
  node.append(...children.map((c) => (c instanceof Node ? c : String(c ?? '–'))));
  return node;
}

function ago(seconds) {
  if (seconds < 60) return `${Math.round(seconds)} s ago`;
  if (seconds < 3600) return `${Math.round(seconds / 60)} min ago`;
  return `${(seconds / 3600).toFixed(1)} h ago`;
}

function running(worker) {
  if (!worker.current_jobs) return String(worker.running);  // job ids are for admin keys only
  if (!worker.current_jobs.length) return '0';
  const links = worker.current_jobs.map((id) => el('a', { href: `#/jobs/${id}`, class: 'mono', title: id }, id.slice(0, 8)));
  return el('span', {}, ...links.flatMap((a, i) => (i ? [' ', a] : [a])));
}

export function renderWorkers(data) {
  const rows = data.workers.map((w) => el('tr', { 'data-worker-id': w.id, 'data-state': w.state },
    el('th', { scope: 'row', class: 'mono' }, w.id),
    el('td', {}, w.type),
    el('td', {}, el('span', { class: `badge worker-${w.state}` }, w.state)),
    el('td', { class: 'mono' }, `${w.host}:${w.pid}`),
    el('td', {}, `${w.pool} × ${w.concurrency}`),
    el('td', { class: 'num running' }, running(w)),
    el('td', { class: 'num processed' }, w.processed),
    el('td', { class: 'num failed' }, w.failed),
    el('td', { title: w.last_seen_at }, w.state === 'lost' ? `lost, last seen ${ago(w.seconds_since_seen)}`
      : ago(w.seconds_since_seen)),
    el('td', { class: 'muted' }, w.version)));
  document.getElementById('fleet-table').tBodies[0].replaceChildren(...rows);
  document.getElementById('fleet-table').hidden = rows.length === 0;
  const parts = Object.entries(data.by_type).map(([type, n]) => `${type}: ${n.live} live${n.lost ? `, ${n.lost} lost` : ''}`);
  document.getElementById('fleet-summary').textContent = rows.length
    ? `${parts.join(' · ')}. A worker is lost after ${data.lost_after_seconds} s without a heartbeat.`
    : 'No worker has registered: start offload-worker-ocr or offload-worker-llm (or let KEDA wake one).';
}

export function renderWarnings(warnings) {
  const box = document.getElementById('warnings');
  box.replaceChildren(...(warnings || []).map((w) => el('p', { 'data-job-type': w.type }, w.detail)));
  box.hidden = !warnings || warnings.length === 0;
}
