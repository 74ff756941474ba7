-- bench/batch.lua: wrk script for backend publishing: POSTs one batch
-- (the JSON array in the file RTW_BENCH_BODY) to /v1/messages with a
-- service token (RTW_BENCH_TOKEN), through nginx -> rtw-fcgi -> PostgreSQL.
-- Everything but the request is bench/post.lua's (status counts, the
-- WRKJSON line).
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "post.lua")

local token = os.getenv("RTW_BENCH_TOKEN") or ""
local f = assert(io.open(os.getenv("RTW_BENCH_BODY") or "", "rb"))
local body = f:read("*a")
f:close()

function request()
  return wrk.format("POST", "/v1/messages", {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer " .. token,
  }, body)
end
