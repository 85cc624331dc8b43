// Pipelines: the tenant's list (state, progress), and a pipeline's page: its steps as tables of
// their jobs (one per page for a per-page step), states moving live from the pipeline's event
// stream, the final result, the trace, and Cancel and Retry where they apply. Each step's job
// links to its own job page.

import { PIPELINE_ENDED } from './api.js';
import { $, PagedList, badge, fieldList, h, jobLink, show, timeEl, traceLink } from './dom.js';

export const PIPELINE_ROUTE = /^#\/pipelines\/([0-9a-fA-F-]{36})$/;

function progressSummary(p) {
  const parts = [`${p.jobs_done} of ${p.jobs} jobs`, `${p.steps_done} of ${p.steps} steps`];
  if (p.pages) parts.push(`${p.pages_done} of ${p.pages} pages`);
  return parts.join(' · ');
}

function pipelineRow(pipeline) {
  const p = pipeline.progress;
  return h('tr', { 'data-pipeline-id': pipeline.id },
    h('td', {}, h('a', { href: `#/pipelines/${pipeline.id}`, class: 'mono', title: pipeline.id }, pipeline.id.slice(0, 8))),
    h('td', {}, badge(pipeline.state)),
    h('td', { class: 'progress-cell' },
      h('progress', { max: p.jobs || 1, value: p.jobs_done, 'aria-label': `Pipeline ${pipeline.id.slice(0, 8)} progress` }),
      ' ', h('span', { class: 'progress-text' }, progressSummary(p))),
    h('td', {}, pipeline.steps.map((s) => s.name).join(' → ')),
    h('td', {}, pipeline.priority),
    h('td', {}, timeEl(pipeline.created_at)),
    h('td', {}, timeEl(pipeline.ended_at)));
}

export function pipelineList(api) {
  return new PagedList({
    table: 'pipelines-table', more: 'pipelines-more', empty: 'pipelines-empty', row: pipelineRow,
    fetchPage: async (cursor, signal) => {
      const page = await api().pipelines({ cursor }, { signal });
      return { items: page.pipelines, next: page.next_cursor };
    },
  });
}

// -- one pipeline -------------------------------------------------------------------------------

function jobError(job) {
  return job.error ? `${job.error.type}: ${job.error.message}` : '';
}

function stepSection(step, number) {
  const done = `${step.done} of ${step.jobs.length} done`;
  const kind = [step.type, step.per_page ? 'per page' : null].filter(Boolean).join(', ');
  const rows = step.jobs.map((job) => h('tr', { 'data-job-id': job.id },
    step.per_page ? h('th', { scope: 'row', class: 'num' }, job.page) : null,
    h('td', {}, jobLink(job)),
    h('td', { class: 'job-state' }, badge(job.state)),
    h('td', { class: 'num' }, job.attempts),
    h('td', { class: 'detail' }, jobError(job))));
  return h('section', { class: 'step', 'data-step': step.name, 'aria-labelledby': `step-${number}-title` },
    h('h3', { id: `step-${number}-title` }, `Step ${number}: ${step.name} `,
      h('span', { class: 'muted' }, `(${kind}) · ${done} `), badge(step.state)),
    h('div', { class: 'table-wrap' }, h('table', {},
      h('caption', { class: 'visually-hidden' }, `Jobs of step ${number}, ${step.name}`),
      h('thead', {}, h('tr', {},
        step.per_page ? h('th', { scope: 'col', class: 'num' }, 'Page') : null,
        h('th', { scope: 'col' }, 'Job'), h('th', { scope: 'col' }, 'State'),
        h('th', { scope: 'col', class: 'num' }, 'Attempts'), h('th', { scope: 'col' }, 'Error'))),
      h('tbody', {}, rows))));
}

function chunkingNote(result) {
  const c = result?.chunking;
  return c ? `The input was split into ${c.chunks} chunks of at most ${c.max_chunk_chars} characters (on ${c.split_on}): ${c.combined}.` : null;
}

function resultText(result) {
  return typeof result?.text === 'string' ? result.text : JSON.stringify(result, null, 2);
}

// The last step's result: one text, or one per page when the last step is per-page.
function renderResult(result) {
  if (!Array.isArray(result)) {
    return [h('pre', { id: 'pipeline-result-text' }, resultText(result)), h('p', { class: 'muted' }, chunkingNote(result))];
  }
  return result.map((part, i) => h('section', { class: 'ocr-page', 'data-page': i + 1 },
    h('h3', {}, `Page ${i + 1} of ${result.length}`), h('pre', {}, resultText(part)),
    h('p', { class: 'muted' }, chunkingNote(part))));
}

function cancellable(pipeline) { return !PIPELINE_ENDED.has(pipeline.state) && pipeline.state !== 'cancelling'; }

function renderPipeline(pipeline, config) {
  $('pipeline-id').textContent = pipeline.id;
  $('pipeline-state').replaceChildren(badge(pipeline.state));
  const p = pipeline.progress;
  $('pipeline-progress').max = p.jobs || 1;
  $('pipeline-progress').value = p.jobs_done;
  $('pipeline-progress-text').textContent = progressSummary(p);
  $('pipeline-fields').replaceChildren(...fieldList([
    ['Steps', pipeline.steps.map((s) => s.name).join(' → ')], ['Pages', pipeline.pages], ['Priority', pipeline.priority],
    ['Created', timeEl(pipeline.created_at)], ['Ended', timeEl(pipeline.ended_at)],
    ['Trace', traceLink(config.tracing_ui_url_template, pipeline.trace_id, 'pipeline-trace-link')],
  ]));
  $('pipeline-steps').replaceChildren(...pipeline.steps.map((step, i) => stepSection(step, i + 1)));
  show('pipeline-cancel', cancellable(pipeline));
  show('pipeline-retry', pipeline.state === 'failed');
  // The stream's opening `pipeline` event carries no result: keep the one shown.
  if (pipeline.state === 'succeeded' && pipeline.result !== undefined && pipeline.result !== null) {
    $('pipeline-result').replaceChildren(...renderResult(pipeline.result));
    show('pipeline-result-section', true);
  } else if (pipeline.state !== 'succeeded') show('pipeline-result-section', false);
}

// A job's move, shown at once; the counts and the result follow with the next read.
function showJobState(data) {
  const cell = $('pipeline-steps').querySelector(`tr[data-job-id="${CSS.escape(String(data.job))}"] .job-state`);
  cell?.replaceChildren(badge(data.state));
}

export async function showPipeline(id, { api, config, fail }, signal) {
  show('pipeline-view', true);
  show('pipeline-result-section', false);
  for (const part of ['pipeline-cancel', 'pipeline-retry']) show(part, false);
  $('pipeline-id').textContent = id;
  $('pipeline-state').replaceChildren();
  $('pipeline-steps').replaceChildren();
  $('pipeline-fields').replaceChildren();
  $('pipeline-message').textContent = '';
  $('pipeline-message').classList.remove('error');
  let lastEventId = '';

  // At most one read in flight, and one more after it when events came meanwhile: a pipeline of
  // many pages moves many jobs at once, and the page reads it again once, not once per move.
  let reading = null;
  let again = false;
  const refresh = () => {
    if (reading) { again = true; return reading; }
    reading = (async () => {
      try {
        do {
          again = false;
          renderPipeline(await api.pipeline(id, { signal }), config);
        } while (again && !signal.aborted);
      } finally { reading = null; }
    })();
    return reading;
  };

  const onEvent = (kind, data) => {
    if (kind === 'pipeline') renderPipeline(data, config);
    else {
      if (kind === 'state') showJobState(data);
      refresh().catch((error) => fail(error, 'pipeline-message'));
    }
  };

  const follow = async () => {
    try {
      lastEventId = await api.followPipeline(id, onEvent, { signal, lastEventId });
    } catch (error) {
      fail(error, 'pipeline-message');
    }
  };

  const say = (text) => {
    $('pipeline-message').classList.remove('error');
    $('pipeline-message').textContent = text;
  };
  $('pipeline-cancel').onclick = async () => {
    try {
      const pipeline = await api.cancelPipeline(id);
      say(pipeline.state === 'cancelled' ? 'Cancelled.' : 'Cancelling: the running step stops at its next checkpoint; nothing further runs.');
      renderPipeline(pipeline, config);
    } catch (error) {
      fail(error, 'pipeline-message');
    }
  };
  $('pipeline-retry').onclick = async () => {
    try {
      const pipeline = await api.retryPipeline(id);
      say('Retrying: the failed step runs again; the steps that succeeded are not rerun.');
      renderPipeline(pipeline, config);
      follow();  // the stream closed when the step failed; pick it up after that event
    } catch (error) {
      fail(error, 'pipeline-message');
    }
  };

  try {
    await refresh();
  } catch (error) {
    if (error?.status === 404) {
      $('pipeline-message').textContent = 'No such pipeline for your key.';
      return;
    }
    return fail(error, 'pipeline-message');
  }
  await follow();
}
