// The dashboard: sign in with an API key, an overview (queues, recent jobs, dead letters) that
// refreshes itself, and a job page that follows the job live. Everything shown comes from the
// JSON APIs; nothing is written with innerHTML, so job data can never become markup.

import { Api, ApiError, TERMINAL } from './api.js';
import { renderCluster } from './cluster.js';

const KEY_STORAGE = 'offload.apiKey';
const REFRESH_MS = 3000;
const JOB_ROUTE = /^#\/jobs\/([0-9a-fA-F-]{36})$/;

const $ = (id) => document.getElementById(id);

let config = null;
let api = null;
let pageController = null;  // aborts the current view's timers, requests and streams

// -- small helpers ----------------------------------------------------------------------------

function h(tag, attrs = {}, ...children) {
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

function show(id, visible) { $(id).hidden = !visible; }

function duration(seconds) {
  if (seconds === null || seconds === undefined) return '–';
  if (seconds < 60) return `${seconds.toFixed(seconds < 10 ? 1 : 0)} s`;
  if (seconds < 3600) return `${(seconds / 60).toFixed(1)} min`;
  if (seconds < 86400) return `${(seconds / 3600).toFixed(1)} h`;
  return `${(seconds / 86400).toFixed(1)} d`;
}

function timeEl(iso) {
  if (!iso) return '–';
  const when = new Date(iso);
  const ago = Math.max(0, (Date.now() - when.getTime()) / 1000);
  return h('time', { datetime: iso, title: when.toLocaleString() }, `${duration(ago)} ago`);
}

function badge(state) {
  return h('span', { class: `badge state-${state}` }, state);
}

function jobLink(job) {
  return h('a', { href: `#/jobs/${job.id}`, class: 'mono', title: job.id }, job.id.slice(0, 8));
}

function progressText(progress) {
  if (!progress) return '';
  // The worker's message ("page 2/3") says it best; the bare counts otherwise.
  return progress.message || (progress.total ? `${progress.current}/${progress.total}` : '');
}

function replaceRows(tbody, rows) {
  tbody.replaceChildren(...rows);
}

function sleep(ms, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => { clearTimeout(timer); resolve(); }, { once: true });
  });
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
  const rows = Object.entries(stats.queues).map(([name, q]) => h('tr', {},
    h('th', { scope: 'row' }, name),
    h('td', { class: 'num' }, q.depth),
    h('td', { class: 'num' }, duration(q.oldest_age_seconds))));
  replaceRows($('queues-table').tBodies[0], rows);
  const workers = Object.entries(stats.workers || {}).map(([type, w]) => h('tr', {},
    h('th', { scope: 'row' }, type),
    h('td', { class: 'num' }, w.backlog),
    h('td', { class: 'num' }, w.running),
    h('td', { class: 'num replicas' }, w.desired_replicas)));
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
    h('td', {}, badge(job.state)),
    h('td', {}, job.priority),
    h('td', { class: 'num' }, `${job.attempts}/${job.max_attempts}`),
    h('td', {}, timeEl(job.created_at)),
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

function deadRow(job) {
  const button = h('button', { type: 'button', class: 'requeue', 'aria-label': `Requeue job ${job.id}`,
                               onclick: () => requeueDead(job.id, button) }, 'Requeue');
  return h('tr', { 'data-job-id': job.id },
    h('td', {}, jobLink(job)),
    h('td', {}, job.type),
    h('td', { class: 'detail' }, job.error ? `${job.error.type}: ${job.error.message}` : ''),
    h('td', {}, timeEl(job.finished_at)),
    h('td', {}, button));
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
  const { jobs } = await api.deadLetters({ signal });
  replaceRows($('dead-table').tBodies[0], jobs.map(deadRow));
  show('dead-empty', jobs.length === 0);
  show('dead-table', jobs.length > 0);
}

async function refreshOverview(signal) {
  const [stats] = await Promise.all([api.queues({ signal }), loadJobs(signal), loadDead(signal)]);
  renderQueues(stats);
}

async function showOverview(signal) {
  show('overview', true);
  while (!signal.aborted) {
    try {
      if (!document.hidden) await refreshOverview(signal);
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

// -- one job ----------------------------------------------------------------------------------

function traceLink(traceId) {
  const template = config.tracing_ui_url_template;
  if (!traceId) return h('span', { class: 'muted' }, 'none recorded');
  if (!template) return h('code', { class: 'mono' }, traceId);
  const href = template.replaceAll('{trace_id}', encodeURIComponent(traceId));
  return h('a', { href, id: 'job-trace-link', target: '_blank', rel: 'noopener noreferrer', class: 'mono' }, traceId);
}

function renderJob(job) {
  $('job-id').textContent = job.id;
  $('job-state').replaceChildren(badge(job.state));
  const fields = [
    ['Type', job.type], ['Priority', job.priority], ['Attempts', `${job.attempts} of ${job.max_attempts}`],
    ['Created', timeEl(job.created_at)], ['Started', timeEl(job.started_at)], ['Finished', timeEl(job.finished_at)],
    ['Trace', traceLink(job.trace_id)],
  ];
  if (job.state === 'retrying' && job.retry_at) fields.splice(3, 0, ['Next attempt', timeEl(job.retry_at)]);
  if (job.run_at) fields.splice(3, 0, ['Runs at', timeEl(job.run_at)]);
  if (job.cancel_requested && !TERMINAL.has(job.state)) fields.push(['Cancel', 'requested; stops at the next checkpoint']);
  $('job-fields').replaceChildren(...fields.flatMap(([name, value]) => [h('dt', {}, name), h('dd', {}, value)]));
  renderProgress(job.progress, job.state);
  show('job-error-section', Boolean(job.error));
  $('job-error').textContent = job.error
    ? `${job.error.type}: ${job.error.message} (${job.error.retryable ? 'retryable' : 'not retryable'})` : '';
  show('job-cancel', !TERMINAL.has(job.state));
  show('job-retry', job.state === 'failed' || job.state === 'dead');
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

function resultText(result) {
  if (typeof result?.text === 'string') return result.text;
  if (Array.isArray(result?.pages) && result.pages.every((p) => typeof p?.text === 'string')) {
    return result.pages.map((p) => p.text).join('\n\f\n');
  }
  return JSON.stringify(result, null, 2);
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
      $('job-result').textContent = resultText(result);
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

function route() {
  pageController?.abort();
  pageController = new AbortController();
  const { signal } = pageController;
  for (const id of ['sign-in', 'overview', 'job-view']) show(id, false);
  show('nav', Boolean(api));
  if (!api) {
    show('sign-in', true);
    $('api-key').focus();
    return;
  }
  const match = location.hash.match(JOB_ROUTE);
  if (match) showJob(match[1].toLowerCase(), signal);
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
  $('jobs-more').addEventListener('click', () => loadJobs(pageController.signal, { more: true })
    .catch((error) => handleFailure(error)));
  document.addEventListener('visibilitychange', () => { if (!document.hidden && api && !location.hash.match(JOB_ROUTE)) route(); });
  window.addEventListener('hashchange', route);
  const key = sessionStorage.getItem(KEY_STORAGE);
  if (key) api = new Api(key, config);
  route();
  document.body.dataset.ready = 'true';
}

boot();
