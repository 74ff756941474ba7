-- fcgi/bench_post.lua: wrk script for fcgi/bench_ingest.py: POSTs
-- broadcasts with a Bearer token, spread over RTW_BENCH_STREAMS streams.
-- Success is counted from the database by the driver, not here.
local token = os.getenv("RTW_BENCH_TOKEN") or ""
local widget_key = os.getenv("RTW_BENCH_WIDGET_KEY") or ""
local streams = tonumber(os.getenv("RTW_BENCH_STREAMS") or "100")
local n = 0

function request()
  n = n + 1
  local body = string.format(
    '{"type":"broadcast","widget_key":"%s","timestamp":%d.5,"message":{"seq":%d,"text":"hello from the ingest benchmark"}}',
    widget_key, n % 10000, n)
  return wrk.format("POST", "/v1/streams/bench-" .. (n % streams) .. "/messages", {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer " .. token,
  }, body)
end

function done(summary, latency, requests)
  io.write(string.format('WRKJSON {"requests":%d,"duration_s":%.3f,"p50_ms":%.2f,"p99_ms":%.2f,"non2xx":%d,"errors":%d}\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.errors.status, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
