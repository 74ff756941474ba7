-- conf/apache-events-retry.lua: Apache's answer on the events path when
-- rtw-sse is down, restarting or not yet ready (502, 503, 504): a 200 event
-- stream that only says "retry", because a standard EventSource closes for
-- good on any non-200. The client reconnects with its Last-Event-ID after a
-- jittered delay (so a restart does not become a reconnect storm) and
-- resumes. Used by conf/apache-rtw.conf through mod_lua.
function handle(r)
    r.status = 200
    r.content_type = "text/event-stream"
    r.headers_out["Cache-Control"] = "no-store"
    r.headers_out["Access-Control-Allow-Origin"] = "*"
    r:puts(string.format("retry: %d\n: rtw-sse is not available; reconnect\n\n", math.random(700, 1900)))
    return apache2.OK
end
