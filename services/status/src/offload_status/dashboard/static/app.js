// The dashboard: sign in with an API key, an overview (queues, throughput, workers, recent jobs,
// dead letters) that refreshes itself, and a job page that follows the job live; pipelines and
// batches have their own lists and pages (pipelines.js, batches.js). Everything shown comes from
// the JSON APIs; nothing is written with innerHTML, so job data can never become markup.

import { Api, ApiError, TERMINAL } from './api.js';
import { $, badge, duration, fieldList, h, jobLink, show, sleep, timeEl, traceLink } from './dom.js';
import { BATCH_ROUTE, batchList, showBatch } from './batches.js';
import { renderCluster } from './cluster.js';
import { renderWarnings, renderWorkers } from './fleet.js';
import { PIPELINE_ROUTE, pipelineList, showPipeline } from './pipelines.js';
import { renderThroughput } from './throughput.js';

const KEY_STORAGE = 'offload.apiKey';
const REFRESH_MS = 3000;
const JOB_ROUTE = /^#\/jobs\/([0-9a-fA-F-]{36})$/;
const JOB_ID = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;
// Pages that follow one thing live: coming back to the tab does not reload them.
const LIVE_ROUTES = [JOB_ROUTE, PIPELINE_ROUTE, BATCH_ROUTE];
const VIEWS = ['sign-in', 'overview', 'job-view', 'pipelines-view', 'pipeline-view', 'batches-view', 'batch-view'];

let config = null;
let api = null;
let pageController = null;  // aborts the current view's timers, requests and streams

// -- small helpers ----------------------------------------------------------------------------

function bytes(n) {
  if (n === null || n === undefined) return null;
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

// What the job was asked to do, in a line: the document, or the prompt's first words and the model.
function inputSummary(job) {
  const p = job.params || {};
  if (job.type === 'ocr') {
    const pages = p.pages ? `${p.pages} page${p.pages === 1 ? '' : 's'}` : null;
    return [p.filename || 'document', pages, bytes(p.bytes), p.languages].filter(Boolean).join(' · ');
  }
  if (job.type === 'llm') return [p.prompt_preview ? `“${p.prompt_preview}”` : null, p.model].filter(Boolean).join(' · ');
  if (job.type === 'probe') {
    const fails = p.fail && p.fail !== 'none' ? `, fails (${p.fail})` : '';
    return `probe: sleeps ${p.sleep_seconds ?? 0} s${fails}`;
  }
  return '';
}

// How long the (last) run took, or has taken so far.
function runSeconds(job) {
  if (!job.started_at) return null;
  const end = job.finished_at && job.state !== 'running' ? Date.parse(job.finished_at) : Date.now();
  return Math.max(0, (end - Date.parse(job.started_at)) / 1000);
}

function progressText(progress) {
  if (!progress) return '';
  // The worker's message ("page 2/3") says it best; the bare counts otherwise.
  return progress.message || (progress.total ? `${progress.current}/${progress.total}` : '');
}

function replaceRows(tbody, rows) {
  tbody.replaceChildren(...rows);
}

// A signed-in call failed: a refused key signs out, anything else is shown where it happened.
function handleFailure(error, messageId) {
  if (error?.name === 'AbortError') return;
  if (error instanceof ApiError && error.status === 401) {
    signOut('Your key was refused (it may have been revoked). Sign in again.');
    return;
  }
  const text = error instanceof ApiError ? `${error.title}: ${error.detail}` : `Cannot reach the service (${error.message})`;
  if (messageId) {
    $(messageId).textContent = text;
    $(messageId).classList.add('error');
  }
}

// -- session ----------------------------------------------------------------------------------

function signOut(message = '') {
  sessionStorage.removeItem(KEY_STORAGE);
  api = null;
  $('sign-in-error').textContent = message;
  route();
}

async function signIn(event) {
  event.preventDefault();
  const input = $('api-key');
  const key = input.value.trim();
  $('sign-in-error').textContent = '';
  if (!key) {
    $('sign-in-error').textContent = 'Enter an API key.';
    input.focus();
    return;
  }
  const candidate = new Api(key, config);
  try {
    await candidate.queues();
  } catch (error) {
    $('sign-in-error').textContent = error instanceof ApiError && error.status === 401
      ? 'That key was refused. Check it and try again.'
      : `Cannot sign in: ${error.message}`;
    input.select();
    return;
  }
  sessionStorage.setItem(KEY_STORAGE, key);
  input.value = '';
  api = candidate;
  route();
}

// -- overview ---------------------------------------------------------------------------------

const jobList = { cursor: null, pagesShown: 1 };

function renderQueues(stats) {
  renderWarnings(stats.warnings);
  const rows = Object.entries(stats.queues).map(([name, q]) => h('tr', {},
    h('th', { scope: 'row' }, name),
    h('td', { class: 'num' }, q.depth),
    h('td', { class: 'num' }, duration(q.oldest_age_seconds))));
  replaceRows($('queues-table').tBodies[0], rows);
  const workers = Object.entries(stats.workers || {}).map(([type, w]) => h('tr', {},
    h('th', { scope: 'row' }, type),
    h('td', { class: 'num' }, w.backlog),
    h('td', { class: 'num' }, w.running),
    h('td', { class: 'num replicas' }, w.desired_replicas),
    h('td', { class: `num live${w.warning ? ' error' : ''}` }, w.live_workers ?? '–')));
  replaceRows($('workers-table').tBodies[0], workers);
  renderCluster(stats.cluster);
  $('stat-running').textContent = stats.running;
  $('stat-dead').textContent = stats.dead;
  $('stat-waiting').textContent = Object.values(stats.queues).reduce((n, q) => n + q.depth, 0);
  $('queues-updated').replaceChildren(h('time', { datetime: new Date().toISOString() }, new Date().toLocaleTimeString()));
}

function jobRow(job) {
  const detail = job.error ? `${job.error.type}: ${job.error.message}` : progressText(job.progress);
  return h('tr', { 'data-job-id': job.id },
    h('td', {}, jobLink(job)),
    h('td', {}, job.type),
    h('td', { class: 'input' }, inputSummary(job)),
    h('td', {}, badge(job.state)),
    h('td', {}, job.priority),
    h('td', { class: 'num' }, `${job.attempts}/${job.max_attempts}`),
    h('td', {}, timeEl(job.created_at)),
    h('td', { class: 'num runtime' }, duration(runSeconds(job))),
    h('td', { class: 'detail' }, detail));
}

function filters() {
  return { state: $('filter-state').value, type: $('filter-type').value };
}

async function loadJobs(signal, { more = false } = {}) {
  const tbody = $('jobs-table').tBodies[0];
  if (more) {
    const page = await api.jobs({ ...filters(), cursor: jobList.cursor }, { signal });
    tbody.append(...page.jobs.map(jobRow));
    jobList.cursor = page.next_cursor;
    jobList.pagesShown += 1;
  } else {
    // Refresh what is on screen: as many pages as the user has opened.
    const rows = [];
    let cursor = null;
    for (let i = 0; i < jobList.pagesShown; i++) {
      const page = await api.jobs({ ...filters(), cursor }, { signal });
      rows.push(...page.jobs.map(jobRow));
      cursor = page.next_cursor;
      if (!cursor) break;
    }
    replaceRows(tbody, rows);
    jobList.cursor = cursor;
  }
  show('jobs-more', Boolean(jobList.cursor));
  show('jobs-empty', tbody.rows.length === 0);
}

const deadSelection = new Set();

// Requeue is offered only where running the job again can change its end: not for an error the
// worker called permanent (bad input fails again the same way).
function requeueable(job) {
  return job.state === 'dead' || (job.state === 'failed' && job.error?.retryable === true);
}

function deadRow(job) {
  const button = requeueable(job)
    ? h('button', { type: 'button', class: 'requeue', 'aria-label': `Requeue job ${job.id}`,
                    onclick: () => requeueDead(job.id, button) }, 'Requeue')
    : h('span', { class: 'muted' }, 'not retryable');
  const box = h('input', { type: 'checkbox', 'aria-label': `Select job ${job.id}`, checked: deadSelection.has(job.id),
                           onchange: (event) => {
                             if (event.target.checked) deadSelection.add(job.id); else deadSelection.delete(job.id);
                             showSelection();
                           } });
  return h('tr', { 'data-job-id': job.id },
    h('td', { class: 'select-col' }, box),
    h('td', {}, jobLink(job)),
    h('td', {}, job.type),
    h('td', { class: 'input' }, inputSummary(job)),
    h('td', { class: 'detail' }, job.error ? `${job.error.type}: ${job.error.message}` : ''),
    h('td', {}, timeEl(job.finished_at)),
    h('td', {}, button));
}

function showSelection() {
  const n = deadSelection.size;
  $('dead-selected-count').textContent = n ? `${n} selected` : '';
  $('dead-requeue-selected').disabled = n === 0;
  $('dead-purge-selected').disabled = n === 0;
  const boxes = [...$('dead-table').tBodies[0].querySelectorAll('input[type=checkbox]')];
  $('dead-select-all').checked = boxes.length > 0 && boxes.every((b) => b.checked);
}

// A modal question with a Cancel and a Confirm button; resolves true only on Confirm.
function confirmAction(title, text, confirmLabel) {
  const dialog = $('confirm-dialog');
  $('confirm-title').textContent = title;
  $('confirm-text').textContent = text;
  $('confirm-ok').textContent = confirmLabel;
  dialog.returnValue = '';
  dialog.showModal();
  $('confirm-cancel').focus();
  return new Promise((resolve) => {
    dialog.addEventListener('close', () => resolve(dialog.returnValue === 'confirm'), { once: true });
  });
}

async function bulkDead(action) {
  const ids = [...deadSelection];
  const verb = action === 'purge' ? 'Purge' : 'Requeue';
  const text = action === 'purge'
    ? `Delete ${ids.length} dead job${ids.length === 1 ? '' : 's'} for good: records, events, results and inputs. This cannot be undone.`
    : `Put ${ids.length} dead job${ids.length === 1 ? '' : 's'} back on their queues, attempts reset, as their tenants' quotas allow.`;
  if (!await confirmAction(`${verb} ${ids.length} dead job${ids.length === 1 ? '' : 's'}?`, text, verb)) return;
  const message = $('dead-message');
  message.classList.remove('error');
  try {
    const out = action === 'purge' ? await api.purgeDead(ids) : await api.requeueDead(ids);
    const done = action === 'purge' ? out.purged : out.requeued;
    const skipped = out.skipped.length ? `; ${out.skipped.length} skipped (${out.skipped.map((s) => s.reason).join(', ')})` : '';
    message.textContent = `${action === 'purge' ? 'Purged' : 'Requeued'} ${done.length} dead job${done.length === 1 ? '' : 's'}${skipped}. ${out.remaining} dead left.`;
    deadSelection.clear();
    await refreshOverview(pageController.signal);
  } catch (error) {
    handleFailure(error, 'dead-message');
  }
}

async function requeueDead(id, button) {
  button.disabled = true;
  const message = $('dead-message');
  message.classList.remove('error');
  try {
    const job = await api.requeue(id);
    message.textContent = `Requeued job ${id.slice(0, 8)}: it is ${job.state} again.`;
    await refreshOverview(pageController.signal);
  } catch (error) {
    button.disabled = false;
    handleFailure(error, 'dead-message');
  }
}

async function loadDead(signal) {
  const { jobs, all_tenants: admin } = await api.deadLetters({ signal });
  const listed = new Set(jobs.map((j) => j.id));
  for (const id of [...deadSelection]) if (!listed.has(id)) deadSelection.delete(id);
  $('dead-table').dataset.bulk = admin ? 'on' : 'off';
  show('dead-bulk', admin && jobs.length > 0);
  replaceRows($('dead-table').tBodies[0], jobs.map(deadRow));
  show('dead-empty', jobs.length === 0);
  show('dead-table', jobs.length > 0);
  showSelection();
}

async function refreshOverview(signal) {
  const [stats, workers, throughput] = await Promise.all([
    api.queues({ signal }), api.workers({ signal }), api.throughput({ signal }), loadJobs(signal), loadDead(signal)]);
  renderQueues(stats);
  renderWorkers(workers);
  renderThroughput(throughput);
}

// Search by id: a full id opens the job; the first characters find it among the jobs listed.
async function findJob(event) {
  event.preventDefault();
  const text = $('search-id').value.trim().toLowerCase();
  const message = $('search-message');
  message.classList.remove('error');
  message.textContent = '';
  if (!text) return;
  if (JOB_ID.test(text)) {
    try {
      await api.job(text);
      location.hash = `#/jobs/${text}`;
    } catch (error) {
      if (error instanceof ApiError && error.status === 404) {
        message.textContent = `No job ${text} for your key.`;
        message.classList.add('error');
      } else handleFailure(error, 'search-message');
    }
    return;
  }
  const matches = [...$('jobs-table').tBodies[0].rows].map((r) => r.dataset.jobId).filter((id) => id.startsWith(text));
  if (matches.length === 1) {
    location.hash = `#/jobs/${matches[0]}`;
  } else {
    message.textContent = matches.length
      ? `${matches.length} listed jobs start with ${text}: type more of the id.`
      : `No listed job starts with ${text}; paste the full id (36 characters) to look beyond this list.`;
    message.classList.add('error');
  }
}

// Refreshes a view every REFRESH_MS while the tab is visible, until the view is left.
async function keepRefreshing(signal, refresh) {
  while (!signal.aborted) {
    try {
      if (!document.hidden) await refresh(signal);
      $('boot-error').hidden = true;
    } catch (error) {
      if (signal.aborted) return;
      if (error instanceof ApiError && error.status === 401) return handleFailure(error);
      $('boot-error').textContent = `Could not refresh: ${error.message}`;
      $('boot-error').hidden = false;
    }
    await sleep(REFRESH_MS, signal);
  }
}

async function showOverview(signal) {
  show('overview', true);
  await keepRefreshing(signal, refreshOverview);
}

// -- pipelines and batches ----------------------------------------------------------------------

const pipelines = pipelineList(() => api);
const batches = batchList(() => api);

// -- one job ----------------------------------------------------------------------------------

function renderJob(job) {
  $('job-id').textContent = job.id;
  $('job-state').replaceChildren(badge(job.state));
  const fields = [
    ['Type', job.type], ['Input', inputSummary(job) || '–'], ['Priority', job.priority],
    ['Attempts', `${job.attempts} of ${job.max_attempts}`],
    ['Created', timeEl(job.created_at)], ['Started', timeEl(job.started_at)], ['Finished', timeEl(job.finished_at)],
    ['Run time', h('span', { id: 'job-runtime' }, duration(runSeconds(job)))],
    ['Trace', traceLink(config.tracing_ui_url_template, job.trace_id, 'job-trace-link')],
  ];
  if (job.state === 'retrying' && job.retry_at) fields.splice(3, 0, ['Next attempt', timeEl(job.retry_at)]);
  if (job.run_at) fields.splice(3, 0, ['Runs at', timeEl(job.run_at)]);
  if (job.cancel_requested && !TERMINAL.has(job.state)) fields.push(['Cancel', 'requested; stops at the next checkpoint']);
  $('job-fields').replaceChildren(...fieldList(fields));
  renderProgress(job.progress, job.state);
  show('job-error-section', Boolean(job.error));
  $('job-error').textContent = job.error
    ? `${job.error.type}: ${job.error.message} (${job.error.retryable ? 'retryable' : 'not retryable'})` : '';
  show('job-cancel', !TERMINAL.has(job.state));
  show('job-retry', requeueable(job));
}

function renderProgress(progress, state) {
  const bar = $('job-progress');
  if (state === 'succeeded') {
    bar.max = 1; bar.value = 1;
  } else if (progress && progress.total > 0) {
    bar.max = progress.total; bar.value = Math.min(progress.current, progress.total);
  } else if (state === 'running') {
    bar.removeAttribute('value');  // indeterminate: working, no counts to show
  } else {
    bar.max = 1; bar.value = 0;
  }
  $('job-progress-text').textContent = progressText(progress) || (state === 'succeeded' ? 'done' : '');
}

function historyItem(data) {
  const parts = [data.state];
  if (data.attempt) parts.push(`attempt ${data.attempt}`);
  if (data.requeued) parts.push('requeued');
  if (data.error) parts.push(`${data.error.type}: ${data.error.message}`);
  const at = typeof data.at === 'number' ? new Date(data.at * 1000) : null;
  return h('li', {}, at ? h('time', { datetime: at.toISOString() }, at.toLocaleTimeString()) : '', ' ', parts.join(' · '));
}

function isOcrResult(result) {
  return Array.isArray(result?.pages) && result.pages.every((p) => typeof p?.text === 'string');
}

function resultText(result) {
  if (typeof result?.text === 'string') return result.text;
  return JSON.stringify(result, null, 2);
}

// OCR text page by page, each under its own heading: the break between pages is visible (the
// text's form feeds are not).
function renderPages(result) {
  const total = result.pages.length;
  return result.pages.map((page, i) => h('section', { class: 'ocr-page', 'data-page': i + 1 },
    h('h3', {}, `Page ${i + 1} of ${total}`,
      typeof page.confidence === 'number' ? h('span', { class: 'muted' }, ` · confidence ${Math.round(page.confidence)}%`) : null),
    h('pre', {}, page.text.replaceAll('\f', ''))));
}

async function showJob(id, signal) {
  show('job-view', true);
  for (const part of ['job-output-section', 'job-result-section', 'job-error-section']) show(part, false);
  $('job-id').textContent = id;
  $('job-state').replaceChildren();
  $('job-message').textContent = '';
  $('job-history').replaceChildren();
  const output = document.createTextNode('');
  $('job-output').replaceChildren(output);
  let printed = false;
  let lastEventId = '';

  const refresh = async () => {
    const job = await api.job(id, { signal });
    renderJob(job);
    if (job.state === 'succeeded' && $('job-result-section').hidden) {
      const result = await api.result(id, { signal });
      const pages = isOcrResult(result);
      $('job-result').textContent = pages ? '' : resultText(result);
      show('job-result', !pages);
      $('job-result-pages').replaceChildren(...(pages ? renderPages(result) : []));
      show('job-result-section', true);
      show('job-output-section', false);  // the result is the streamed text, complete
    }
    return job;
  };

  const onEvent = (kind, data) => {
    if (kind === 'state') {
      $('job-state').replaceChildren(badge(data.state));
      $('job-history').append(historyItem(data));
      if (data.state === 'running' && printed) {  // a new attempt generates its text again
        output.data = '';
        printed = false;
      }
      refresh().catch((error) => handleFailure(error, 'job-message'));
    } else if (kind === 'progress') {
      renderProgress(data, 'running');
    } else if (kind === 'token') {
      output.appendData(data.text || '');
      printed = true;
      // LLM jobs report no page counts: what they have generated so far is their progress.
      $('job-progress-text').textContent = `${output.length} characters generated`;
      if ($('job-result-section').hidden) show('job-output-section', true);
    }
  };

  const follow = async () => {
    try {
      lastEventId = await api.follow(id, onEvent, { signal, lastEventId });
    } catch (error) {
      handleFailure(error, 'job-message');
    }
  };

  $('job-cancel').onclick = async () => {
    try {
      const job = await api.cancel(id);
      $('job-message').classList.remove('error');
      $('job-message').textContent = job.state === 'cancelled' ? 'Cancelled.' : 'Cancel requested; the job stops at its next checkpoint.';
      renderJob(job);
    } catch (error) {
      handleFailure(error, 'job-message');
    }
  };
  $('job-retry').onclick = async () => {
    try {
      const job = await api.requeue(id);
      $('job-message').classList.remove('error');
      $('job-message').textContent = 'Requeued.';
      renderJob(job);
      follow();  // the stream ended at the old terminal state; pick it up after that event
    } catch (error) {
      handleFailure(error, 'job-message');
    }
  };

  try {
    await refresh();
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) {
      $('job-message').textContent = 'No such job for your key.';
      return;
    }
    return handleFailure(error, 'job-message');
  }
  await follow();
}

// -- routing ----------------------------------------------------------------------------------

function markNav() {
  const section = location.hash.match(/^#\/(pipelines|batches)/)?.[1] ?? '';
  for (const link of $('nav').querySelectorAll('a')) {
    if (link.getAttribute('href') === `#/${section}`) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
}

function route() {
  pageController?.abort();
  pageController = new AbortController();
  const { signal } = pageController;
  for (const id of VIEWS) show(id, false);
  show('nav', Boolean(api));
  markNav();
  if (!api) {
    show('sign-in', true);
    $('api-key').focus();
    return;
  }
  const hash = location.hash;
  const session = { api, config, fail: handleFailure };
  let match;
  if ((match = hash.match(JOB_ROUTE))) showJob(match[1].toLowerCase(), signal);
  else if ((match = hash.match(PIPELINE_ROUTE))) showPipeline(match[1].toLowerCase(), session, signal);
  else if ((match = hash.match(BATCH_ROUTE))) showBatch(match[1], session, signal);
  else if (hash === '#/pipelines') { show('pipelines-view', true); keepRefreshing(signal, (s) => pipelines.refresh(s)); }
  else if (hash === '#/batches') { show('batches-view', true); keepRefreshing(signal, (s) => batches.refresh(s)); }
  else showOverview(signal);
}

async function boot() {
  try {
    const response = await fetch('/dashboard/config.json', { cache: 'no-store' });
    config = await response.json();
  } catch (error) {
    $('boot-error').textContent = `The dashboard could not load its settings: ${error.message}`;
    $('boot-error').hidden = false;
    return;
  }
  $('sign-in-form').addEventListener('submit', signIn);
  $('sign-out').addEventListener('click', () => signOut());
  $('job-filters').addEventListener('change', () => {
    jobList.pagesShown = 1;
    loadJobs(pageController.signal).catch((error) => handleFailure(error));
  });
  $('job-filters').addEventListener('submit', (event) => event.preventDefault());
  $('job-search').addEventListener('submit', findJob);
  $('dead-select-all').addEventListener('change', (event) => {
    for (const box of $('dead-table').tBodies[0].querySelectorAll('input[type=checkbox]')) {
      box.checked = event.target.checked;
      const id = box.closest('tr').dataset.jobId;
      if (box.checked) deadSelection.add(id); else deadSelection.delete(id);
    }
    showSelection();
  });
  $('dead-requeue-selected').addEventListener('click', () => bulkDead('requeue'));
  $('dead-purge-selected').addEventListener('click', () => bulkDead('purge'));
  $('jobs-more').addEventListener('click', () => loadJobs(pageController.signal, { more: true })
    .catch((error) => handleFailure(error)));
  $('pipelines-more').addEventListener('click', () => pipelines.loadMore(pageController.signal)
    .catch((error) => handleFailure(error)));
  $('batches-more').addEventListener('click', () => batches.loadMore(pageController.signal)
    .catch((error) => handleFailure(error)));
  document.addEventListener('visibilitychange', () => {
    if (!document.hidden && api && !LIVE_ROUTES.some((r) => location.hash.match(r))) route();
  });
  window.addEventListener('hashchange', route);
  const key = sessionStorage.getItem(KEY_STORAGE);
  if (key) api = new Api(key, config);
  route();
  document.body.dataset.ready = 'true';
}

boot();
