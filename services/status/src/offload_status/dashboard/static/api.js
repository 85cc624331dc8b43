// Talking to Offload from the browser: JSON calls with the key as a Bearer header, problem+json
// errors as ApiError, and a job's or a pipeline's live events over fetch streaming (EventSource
// cannot send an Authorization header), resumed with Last-Event-ID when the connection drops.

export const TERMINAL = new Set(['succeeded', 'failed', 'dead', 'cancelled']);
// A pipeline's states where nothing runs until someone acts (a failed one waits for a retry).
export const PIPELINE_ENDED = new Set(['succeeded', 'failed', 'cancelled']);
const RETRYABLE = new Set([429, 503]);

export class ApiError extends Error {
  constructor(status, title, detail, extra = {}) {
    super(`${title}: ${detail}`);
    this.status = status;
    this.title = title;
    this.detail = detail;
    this.extra = extra;
  }

  static async from(response) {
    let body = {};
    try { body = await response.json(); } catch { /* not JSON: keep the status line */ }
    return new ApiError(response.status, body.title || response.statusText || 'Error',
                        body.detail || `HTTP ${response.status}`, body);
  }
}

// The WHATWG event-stream rules, one line at a time (the same as the Python client's decoder).
class SseDecoder {
  constructor() { this.lastId = ''; this.retry = null; this.event = ''; this.data = []; }

  feed(line) {
    if (line === '') {
      const data = this.data, event = this.event;
      this.data = []; this.event = '';
      return data.length ? { id: this.lastId, event: event || 'message', data: data.join('\n') } : null;
    }
    if (line.startsWith(':')) return null;
    const colon = line.indexOf(':');
    const name = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (name === 'data') this.data.push(value);
    else if (name === 'event') this.event = value;
    else if (name === 'id' && !value.includes('\0')) this.lastId = value;
    else if (name === 'retry' && /^\d+$/.test(value)) this.retry = Number(value);
    return null;
  }
}

function sleep(ms, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => { clearTimeout(timer); resolve(); }, { once: true });
  });
}

export class Api {
  constructor(key, config) {
    this.key = key;
    this.gatewayUrl = config.gateway_url;
  }

  headers(extra = {}) {
    return { Authorization: `Bearer ${this.key}`, ...extra };
  }

  async request(method, url, { signal, body } = {}) {
    const headers = this.headers({ Accept: 'application/json', ...(body ? { 'Content-Type': 'application/json' } : {}) });
    const response = await fetch(url, { method, headers, signal, cache: 'no-store',
                                        body: body ? JSON.stringify(body) : undefined });
    if (!response.ok) throw await ApiError.from(response);
    return response.json();
  }

  // status service (same origin)
  queues(opts) { return this.request('GET', '/v1/queues', opts); }
  job(id, opts) { return this.request('GET', `/v1/jobs/${encodeURIComponent(id)}`, opts); }
  result(id, opts) { return this.request('GET', `/v1/jobs/${encodeURIComponent(id)}/result`, opts); }
  deadLetters(opts) { return this.request('GET', '/v1/dead-letters', opts); }
  workers(opts) { return this.request('GET', '/v1/workers', opts); }
  throughput(opts) { return this.request('GET', '/v1/throughput?minutes=60', opts); }
  jobs({ state, type, cursor, limit = 25 } = {}, opts) {
    const q = new URLSearchParams({ limit: String(limit) });
    if (state) q.set('state', state);
    if (type) q.set('type', type);
    if (cursor) q.set('cursor', cursor);
    return this.request('GET', `/v1/jobs?${q}`, opts);
  }

  pipelines({ cursor, limit = 20 } = {}, opts) {
    const q = new URLSearchParams({ limit: String(limit) });
    if (cursor) q.set('cursor', cursor);
    return this.request('GET', `/v1/pipelines?${q}`, opts);
  }
  pipeline(id, opts) { return this.request('GET', `/v1/pipelines/${encodeURIComponent(id)}`, opts); }

  // gateway (another origin; it allows any origin, without credentials)
  cancel(id) { return this.request('DELETE', `${this.gatewayUrl}/v1/jobs/${encodeURIComponent(id)}`); }
  requeue(id) { return this.request('POST', `${this.gatewayUrl}/v1/jobs/${encodeURIComponent(id)}/retry`); }
  requeueDead(ids) { return this.request('POST', `${this.gatewayUrl}/v1/dead-letters/requeue`, { body: { job_ids: ids } }); }
  purgeDead(ids) { return this.request('POST', `${this.gatewayUrl}/v1/dead-letters/purge`, { body: { job_ids: ids } }); }
  cancelPipeline(id) { return this.request('DELETE', `${this.gatewayUrl}/v1/pipelines/${encodeURIComponent(id)}`); }
  retryPipeline(id) { return this.request('POST', `${this.gatewayUrl}/v1/pipelines/${encodeURIComponent(id)}/retry`); }
  // The Batches and Files APIs are OpenAI's, served by the gateway.
  batches({ after, limit = 20 } = {}, opts) {
    const q = new URLSearchParams({ limit: String(limit) });
    if (after) q.set('after', after);
    return this.request('GET', `${this.gatewayUrl}/v1/batches?${q}`, opts);
  }
  batch(id, opts) { return this.request('GET', `${this.gatewayUrl}/v1/batches/${encodeURIComponent(id)}`, opts); }
  cancelBatch(id) { return this.request('POST', `${this.gatewayUrl}/v1/batches/${encodeURIComponent(id)}/cancel`); }

  // A file's bytes as a Blob: fetched with the key in its header, so the key never goes into a
  // URL (a plain link could not carry it).
  async fileContent(id, opts = {}) {
    const response = await fetch(`${this.gatewayUrl}/v1/files/${encodeURIComponent(id)}/content`,
                                 { headers: this.headers(), signal: opts.signal, cache: 'no-store' });
    if (!response.ok) throw await ApiError.from(response);
    return response.blob();
  }

  // Calls onEvent(kind, data, id) for each event until the stream ends after the job's final
  // state (or until `signal` aborts). Returns the last event id seen, to resume from after a
  // requeue.
  follow(jobId, onEvent, { signal, lastEventId = '' } = {}) {
    return this.stream(`/v1/jobs/${encodeURIComponent(jobId)}/events`, onEvent, {
      signal, lastEventId,
      isLast: (kind, data) => kind === 'state' && TERMINAL.has(data?.state),
      hasEnded: async () => TERMINAL.has((await this.job(jobId, { signal })).state),
    });
  }

  // The same for a pipeline: every step's job moves (`state`), until `end`, or `blocked` when a
  // step failed (a retry resumes it: follow again from the id returned).
  followPipeline(pipelineId, onEvent, { signal, lastEventId = '' } = {}) {
    return this.stream(`/v1/pipelines/${encodeURIComponent(pipelineId)}/events`, onEvent, {
      signal, lastEventId,
      isLast: (kind) => kind === 'end' || kind === 'blocked',
      hasEnded: async () => PIPELINE_ENDED.has((await this.pipeline(pipelineId, { signal })).state),
    });
  }

  // An event stream of the status service. `isLast(kind, data)`: the event the server closes the
  // stream after; `hasEnded()`: whether a stream the server closed early has nothing more to say.
  async stream(path, onEvent, { signal, lastEventId = '', isLast, hasEnded }) {
    let retryMs = 2000;
    let fruitless = 0;
    let atLast = false;
    while (!signal?.aborted) {
      let gotEvent = false;
      let ended = false;
      try {
        const headers = this.headers({ Accept: 'text/event-stream' });
        if (lastEventId) headers['Last-Event-ID'] = lastEventId;
        const response = await fetch(path, { headers, signal, cache: 'no-store' });
        if (!response.ok) {
          const error = await ApiError.from(response);
          if (!RETRYABLE.has(response.status)) throw error;
        } else {
          const decoder = new SseDecoder();
          const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
          let buffer = '';
          for (;;) {
            const { value, done } = await reader.read();
            if (done) break;
            buffer += value;
            const lines = buffer.split(/\r\n|\r|\n/);
            buffer = lines.pop();
            for (const line of lines) {
              const message = decoder.feed(line);
              if (decoder.retry !== null) retryMs = Math.min(decoder.retry, 10000);
              if (!message) continue;
              if (message.id) lastEventId = message.id;
              gotEvent = true;
              let data;
              try { data = JSON.parse(message.data); } catch { data = message.data; }
              onEvent(message.event, data, message.id);
              atLast = isLast(message.event, data);
            }
          }
          // The server ends the stream right after the last event. One met earlier in a replay
          // is not the end: a requeued job, a retried pipeline, has events after it.
          if (atLast) return lastEventId;
          ended = true;
        }
      } catch (error) {
        if (signal?.aborted) return lastEventId;
        if (error instanceof ApiError) throw error;
        // a network error: the connection was cut; resume below
      }
      // The server ends a stream early when the job finished before our cursor, or when the
      // stream reached its lifetime (OFFLOAD_SSE_MAX_STREAM_SECONDS): then resume.
      if (ended && await hasEnded()) return lastEventId;
      // A stream the server ended in good order is not a failure, even a quiet one.
      fruitless = gotEvent || ended ? 0 : fruitless + 1;
      if (fruitless > 5) throw new Error('lost the live event stream; reload to try again');
      await sleep(retryMs, signal);
    }
    return lastEventId;
  }
}
