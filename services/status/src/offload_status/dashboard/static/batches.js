// Batches (OpenAI's Batches API, served by the gateway): the tenant's list with each batch's
// status and how many of its requests are done, and a batch's page: counts, times, metadata,
// errors, Cancel while it is in progress, and its output and error files to download. A file is
// fetched with the key in its Authorization header and saved from a Blob: the key is never put
// in a URL.

import { $, PagedList, badge, fieldList, h, show, sleep, unixTimeEl } from './dom.js';

export const BATCH_ROUTE = /^#\/batches\/(batch_[0-9a-fA-F]{32})$/;
const ACTIVE = new Set(['validating', 'in_progress', 'finalizing', 'cancelling']);
const REFRESH_MS = 3000;

function countsText(counts) {
  const failed = counts.failed ? `, ${counts.failed} failed` : '';
  return `${counts.completed + counts.failed} of ${counts.total} done${failed}`;
}

function countsProgress(batch, label) {
  const c = batch.request_counts;
  return h('progress', { max: c.total || 1, value: c.completed + c.failed, 'aria-label': label });
}

function batchRow(batch) {
  return h('tr', { 'data-batch-id': batch.id },
    h('td', {}, h('a', { href: `#/batches/${batch.id}`, class: 'mono', title: batch.id }, batch.id.slice(0, 14))),
    h('td', {}, batch.endpoint),
    h('td', {}, badge(batch.status)),
    h('td', { class: 'progress-cell' }, countsProgress(batch, `Batch ${batch.id} progress`), ' ',
      h('span', { class: 'counts' }, countsText(batch.request_counts))),
    h('td', {}, unixTimeEl(batch.created_at)));
}

export function batchList(api) {
  return new PagedList({
    table: 'batches-table', more: 'batches-more', empty: 'batches-empty', row: batchRow,
    fetchPage: async (after, signal) => {
      const page = await api().batches({ after }, { signal });
      return { items: page.data, next: page.has_more ? page.last_id : null };
    },
  });
}

// -- one batch ----------------------------------------------------------------------------------

function endedAt(batch) {
  const ended = ['completed_at', 'failed_at', 'cancelled_at', 'expired_at'].find((name) => batch[name]);
  return ended ? [[`${ended.replace('_at', '').replace(/^./, (c) => c.toUpperCase())}`, unixTimeEl(batch[ended])]] : [];
}

function metadataList(metadata) {
  const entries = Object.entries(metadata || {});
  if (!entries.length) return h('span', { class: 'muted' }, 'none');
  return h('dl', { class: 'metadata' }, entries.flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, String(v))]));
}

async function download(api, fileId, name, button, fail) {
  button.disabled = true;
  try {
    const blob = await api.fileContent(fileId);
    const url = URL.createObjectURL(blob);
    const link = h('a', { href: url, download: name, hidden: true });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60_000);  // time for the browser to save it
  } catch (error) {
    fail(error, 'batch-message');
  } finally {
    button.disabled = false;
  }
}

function renderBatch(batch, api, fail) {
  $('batch-id').textContent = batch.id;
  $('batch-status').replaceChildren(badge(batch.status));
  const c = batch.request_counts;
  $('batch-progress').max = c.total || 1;
  $('batch-progress').value = c.completed + c.failed;
  $('batch-progress-text').textContent = countsText(c);
  $('batch-counts').replaceChildren(...fieldList([['Total', c.total], ['Completed', c.completed], ['Failed', c.failed]]));
  $('batch-fields').replaceChildren(...fieldList([
    ['Endpoint', batch.endpoint], ['Input file', h('code', {}, batch.input_file_id)],
    ['Created', unixTimeEl(batch.created_at)], ['In progress', unixTimeEl(batch.in_progress_at)],
    ...endedAt(batch), ['Expires', unixTimeEl(batch.expires_at)], ['Metadata', metadataList(batch.metadata)],
  ]));
  const errors = batch.errors?.data || [];
  $('batch-errors').replaceChildren(...errors.map((e) => h('li', {},
    [e.line ? `line ${e.line}` : null, e.code, e.message].filter(Boolean).join(': '))));
  show('batch-errors-section', errors.length > 0);
  show('batch-cancel', batch.status === 'in_progress');
  const files = [['output', batch.output_file_id], ['error', batch.error_file_id]].filter(([, id]) => id);
  $('batch-files').replaceChildren(...files.map(([kind, id]) => {
    const button = h('button', { type: 'button', class: 'quiet', 'data-file-id': id,
                                 onclick: () => download(api, id, `${batch.id}.${kind}.jsonl`, button, fail) },
                     `Download the ${kind} file`);
    return h('li', {}, button, ' ', h('code', { class: 'muted' }, id));
  }));
  show('batch-files-section', files.length > 0);
}

export async function showBatch(id, { api, fail }, signal) {
  show('batch-view', true);
  for (const part of ['batch-cancel', 'batch-files-section', 'batch-errors-section']) show(part, false);
  $('batch-id').textContent = id;
  $('batch-status').replaceChildren();
  $('batch-message').textContent = '';
  $('batch-message').classList.remove('error');
  $('batch-cancel').onclick = async () => {
    try {
      const batch = await api.cancelBatch(id);
      $('batch-message').classList.remove('error');
      $('batch-message').textContent = 'Cancelling: lines not yet run are dropped; the output keeps what finished.';
      renderBatch(batch, api, fail);
    } catch (error) {
      fail(error, 'batch-message');
    }
  };
  // No event stream for batches (OpenAI's contract is polled): read it again while it runs.
  while (!signal.aborted) {
    let batch;
    try {
      batch = await api.batch(id, { signal });
    } catch (error) {
      if (error?.status === 404) {
        $('batch-message').textContent = 'No such batch for your key.';
        return;
      }
      return fail(error, 'batch-message');
    }
    renderBatch(batch, api, fail);
    if (!ACTIVE.has(batch.status)) return;
    await sleep(REFRESH_MS, signal);
  }
}
