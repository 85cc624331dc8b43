-- wrk script: POST one JSON body with a bearer key; optional pacing; a JSON summary at the end.
-- Environment: BENCH_BODY (request body), BENCH_KEY (API key), BENCH_DELAY_MS (mean pause before
-- each request on a connection; 0 = as fast as the server answers).
--
-- The pause is drawn at random (exponential, so each connection's requests arrive like a Poisson
-- stream). With one fixed pause, connections whose answers come back together wait the same
-- time and send together again: they fall into lockstep, and the server sees bursts of all of
-- them at once instead of the spread-out traffic of independent clients.
wrk.method = "POST"
wrk.body = os.getenv("BENCH_BODY")
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. (os.getenv("BENCH_KEY") or "")

local delay_ms = tonumber(os.getenv("BENCH_DELAY_MS") or "0")
if delay_ms > 0 then
  math.randomseed(os.time())
  function delay()
    -- wrk takes whole milliseconds (it truncates): round, so the mean stays delay_ms
    return math.floor(-delay_ms * math.log(1 - math.random()) + 0.5)
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"p50":%d,"p90":%d,"p99":%d,"p999":%d,"max":%d,"mean":%.1f}}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9),
    latency.max, latency.mean))
end
