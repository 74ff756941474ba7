-- bench/post.lua: wrk script for durable ingest: POSTs broadcasts with a
-- Bearer token through nginx -> rtw-fcgi -> PostgreSQL.
-- Environment: RTW_BENCH_TOKEN (publisher token), RTW_BENCH_WIDGET_KEY,
-- RTW_BENCH_STREAMS (how many streams to spread over; 1 = one hot stream,
-- default 100), RTW_BENCH_PREFIX (stream id prefix, default "ingest").
-- Prints the status counts per class at the end (wrk only says "non-2xx").
local token = os.getenv("RTW_BENCH_TOKEN") or ""
local widget_key = os.getenv("RTW_BENCH_WIDGET_KEY") or ""
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
  local stream = prefix .. "-" .. (counter % streams)
  local body = string.format(
    '{"type":"broadcast","widget_key":"%s","timestamp":%d.5,"message":{"seq":%d,"tid":%d,"text":"hello from the ingest benchmark"}}',
    widget_key, counter % 10000, counter, tid)
  return wrk.format("POST", "/v1/streams/" .. stream .. "/messages", {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer " .. token,
  }, body)
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local total = {}
  for _, t in ipairs(threads) do
    local s = t:get("statuses")
    for k, v in pairs(s) do
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
