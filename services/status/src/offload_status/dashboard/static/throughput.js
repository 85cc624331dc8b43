// Throughput over the last hour, from GET /v1/throughput (per-minute snapshots of the lifetime
// counters the status service takes): one small chart per job type, a bar per minute, finished
// jobs in green with the failed and dead ones stacked in red on top. Drawn with SVG elements
// (no markup from strings), with a sentence per type for readers who do not see the bars.

const SVG = 'http://www.w3.org/2000/svg';
const WIDTH = 360, HEIGHT = 90, PAD = 2;

function svg(tag, attrs = {}) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value));
  return node;
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value));
  node.append(...children);
  return node;
}

const failures = (c) => c.failed + c.dead;
const finished = (c) => c.succeeded + c.failed + c.dead + c.cancelled;

function chart(type, points) {
  const counts = points.map((p) => (p.types ? p.types[type] : null));
  const peak = Math.max(1, ...counts.filter(Boolean).map(finished));
  const step = (WIDTH - 2 * PAD) / counts.length;
  const drawing = svg('svg', { viewBox: `0 0 ${WIDTH} ${HEIGHT}`, class: 'spark', 'aria-hidden': 'true',
                               preserveAspectRatio: 'none' });
  drawing.append(svg('line', { x1: 0, y1: HEIGHT - 0.5, x2: WIDTH, y2: HEIGHT - 0.5, class: 'axis' }));
  counts.forEach((c, i) => {
    const x = PAD + i * step;
    if (c === null) {  // no snapshot for that minute: say so with a hatched gap, not a zero
      drawing.append(svg('rect', { x, y: 0, width: Math.max(step - 1, 1), height: HEIGHT, class: 'gap' }));
      return;
    }
    const ok = finished(c) - failures(c);
    const okHeight = (ok / peak) * (HEIGHT - 4);
    const badHeight = (failures(c) / peak) * (HEIGHT - 4);
    if (ok) drawing.append(svg('rect', { x, y: HEIGHT - okHeight, width: Math.max(step - 1, 1), height: okHeight, class: 'ok' }));
    if (failures(c)) {
      drawing.append(svg('rect', { x, y: HEIGHT - okHeight - badHeight, width: Math.max(step - 1, 1),
                                   height: badHeight, class: 'bad' }));
    }
  });
  return drawing;
}

export function renderThroughput(data) {
  const box = document.getElementById('throughput-charts');
  const types = Object.keys(data.totals);
  const figures = types.map((type) => {
    const t = data.totals[type];
    const missing = data.points.filter((p) => !p.types).length;
    const sentence = `${type}: ${finished(t)} finished, ${failures(t)} failed or dead, ${t.retried} retried`
      + ` in the last ${data.minutes} min${missing ? ` (${missing} min without a snapshot)` : ''}`;
    const peak = Math.max(0, ...data.points.filter((p) => p.types).map((p) => finished(p.types[type])));
    return el('figure', { class: 'throughput', 'data-job-type': type },
      chart(type, data.points),
      el('figcaption', {}, el('span', { class: 'summary' }, sentence),
         el('span', { class: 'muted' }, ` · busiest minute ${peak}`)));
  });
  box.replaceChildren(...figures);
  document.getElementById('throughput-updated').textContent = new Date().toLocaleTimeString();
}
