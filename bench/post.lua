-- wrk script: keep-alive POST of one trivial job with ?wait, counting outcomes.
-- The body (JSON job request) is read from the file named by $BENCH_BODY.
local f = assert(io.open(os.getenv("BENCH_BODY"), "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"

local threads = {}
function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  ok, bad, notdone = 0, 0, 0
end

function response(status, headers, body)
  if status >= 200 and status < 300 then
    if string.find(body, '"status":"succeeded"', 1, true) then
      ok = ok + 1
    else
      notdone = notdone + 1
    end
  else
    bad = bad + 1
  end
end

function done(summary, latency, requests)
  local o, b, n = 0, 0, 0
  for _, t in ipairs(threads) do
    o = o + t:get("ok"); b = b + t:get("bad"); n = n + t:get("notdone")
  end
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"succeeded":%d,"non2xx":%d,"not_succeeded":%d,' ..
    '"errors_connect":%d,"errors_read":%d,"errors_write":%d,"errors_timeout":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d}\n',
    summary.requests, summary.duration, o, b, n,
    summary.errors.connect, summary.errors.read, summary.errors.write, summary.errors.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
