// Building the page from API data: elements with text nodes only (nothing from the API becomes
// markup), state badges, times, durations, and links to jobs and traces. Shared by every view.

export const $ = (id) => document.getElementById(id);

export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === 'class') node.className = value;
    else if (name.startsWith('on')) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? '' : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function show(id, visible) { $(id).hidden = !visible; }

export function duration(seconds) {
  if (seconds === null || seconds === undefined) return '–';
  if (seconds < 60) return `${seconds.toFixed(seconds < 10 ? 1 : 0)} s`;
  if (seconds < 3600) return `${(seconds / 60).toFixed(1)} min`;
  if (seconds < 86400) return `${(seconds / 3600).toFixed(1)} h`;
  return `${(seconds / 86400).toFixed(1)} d`;
}

export function timeEl(iso) {
  if (!iso) return '–';
  const when = new Date(iso);
  const ago = Math.max(0, (Date.now() - when.getTime()) / 1000);
  return h('time', { datetime: iso, title: when.toLocaleString() }, `${duration(ago)} ago`);
}

// OpenAI's objects (batches, files) count time in Unix seconds.
export function unixTimeEl(seconds) {
  return seconds === null || seconds === undefined ? '–' : timeEl(new Date(seconds * 1000).toISOString());
}

export function badge(state) {
  return h('span', { class: `badge state-${state}` }, state);
}

export function jobLink(job) {
  return h('a', { href: `#/jobs/${job.id}`, class: 'mono', title: job.id }, job.id.slice(0, 8));
}

export function traceLink(template, traceId, id) {
  if (!traceId) return h('span', { class: 'muted' }, 'none recorded');
  if (!template) return h('code', { class: 'mono' }, traceId);
  const href = template.replaceAll('{trace_id}', encodeURIComponent(traceId));
  return h('a', { href, id, target: '_blank', rel: 'noopener noreferrer', class: 'mono' }, traceId);
}

export function fieldList(fields) {
  return fields.flatMap(([name, value]) => [h('dt', {}, name), h('dd', {}, value)]);
}

export function sleep(ms, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => { clearTimeout(timer); resolve(); }, { once: true });
  });
}

// A table of a list API's items, newest first: a refresh reloads as many pages as the user has
// opened, "Load more" appends the next. `fetchPage(cursor, signal)` gives { items, next }.
export class PagedList {
  constructor({ table, more, empty, fetchPage, row }) {
    Object.assign(this, { table, more, empty, fetchPage, row });
    this.cursor = null;
    this.pagesShown = 1;
  }

  async refresh(signal) {
    const rows = [];
    let cursor = null;
    for (let i = 0; i < this.pagesShown; i++) {
      const page = await this.fetchPage(cursor, signal);
      rows.push(...page.items.map(this.row));
      cursor = page.next;
      if (!cursor) break;
    }
    $(this.table).tBodies[0].replaceChildren(...rows);
    this.settle(cursor);
  }

  async loadMore(signal) {
    const page = await this.fetchPage(this.cursor, signal);
    $(this.table).tBodies[0].append(...page.items.map(this.row));
    this.pagesShown += 1;
    this.settle(page.next);
  }

  settle(cursor) {
    this.cursor = cursor;
    show(this.more, Boolean(cursor));
    show(this.empty, $(this.table).tBodies[0].rows.length === 0);
  }
}
