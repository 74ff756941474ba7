-- bench/nchan_post.lua: wrk script, the Nchan reference for ingest: POSTs
-- raw JSON to the publisher location /pub/<id> (in-memory, not durable).
-- Environment: RTW_BENCH_STREAMS (default 100; 1 = one hot channel),
-- RTW_BENCH_PREFIX (channel id prefix).
local streams = tonumber(os.getenv("RTW_BENCH_STREAMS") or "100")
local prefix = os.getenv("RTW_BENCH_PREFIX") or "ingest"
local threads = {}
local counter = 0
statuses = {}

function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  statuses = {}
  counter = tid * 1000003
end

function request()
  counter = counter + 1
  local body = string.format('{"seq":%d,"tid":%d,"text":"hello from the ingest benchmark"}', counter, tid)
  return wrk.format("POST", "/pub/" .. prefix .. "-" .. (counter % streams),
    {["Content-Type"] = "application/json"}, body)
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local total = {}
  for _, t in ipairs(threads) do
    for k, v in pairs(t:get("statuses")) do
      total[k] = (total[k] or 0) + v
    end
  end
  local parts = {}
  for k, v in pairs(total) do
    table.insert(parts, string.format('"%d":%d', k, v))
  end
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_s":%.2f,"rps":%.1f,"p50_ms":%.2f,"p99_ms":%.2f,"max_ms":%.2f,"socket_errors":%d,"statuses":{%s}}\n',
    summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    table.concat(parts, ",")))
end
