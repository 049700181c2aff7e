-- wrk script for bench/run.sh: POST /dispatch/call-event, every request a new, accepted event.
-- Usage: wrk ... -s bench/dispatch.lua http://HOST:PORT -- TOKEN TAG LAG
--   TOKEN  the enterprise's token (its name2 in run.sh; an enterprise with retailcrm, uon and ms
--          enabled, so every event becomes three outbox rows and three deliveries)
--   TAG    a number unique to this wrk run; uniqueIds are "TAG.N" with N = thread * 10^7 + call,
--          so no request of any run repeats a (uniqueId, event_type) the service has seen
--   LAG    how many calls a hangup trails its dial by, per wrk thread (run.sh passes the thread's
--          connections + 1). Each call is a dial and later its hangup, with the same uniqueId;
--          a thread has at most LAG-1 requests in flight, so when the hangup is sent its dial was
--          sent 2*LAG-1 requests earlier and, in practice, has been answered (the service would
--          cope if not: it orders per call by acceptance).
-- Request sequence of a thread: dial 0, ..., dial LAG-1, then hangup 0, dial LAG, hangup 1, ...
-- preceded by one extra dial of a call that never hangs up (call 9999999 of the thread): wrk 4.1
-- calls request() once on thread 0 before the run to check the script, and throws that request
-- away. Whether it is thrown away or sent, no hangup goes out without its dial and nothing repeats.
-- Bodies are built per request (a few string.formats: wrk's Lua cost stays small at these rates).
-- response() counts non-200 answers and 200 bodies without "success":true (a duplicate answer,
-- {"status":"ignored"}, is one of those and is counted separately too). done() prints one
-- machine-readable line for run.sh:
--   BENCH requests=... duration_us=... rps=... p50_us=... p99_us=... max_us=... non200=...
--         bad_body=... duplicates=... dials=... hangups=... errors_connect=... ...
-- A run with non200 > 0, bad_body > 0 or socket errors is reported as failed, never as a rate.

local threads = {} -- setup()/done() environment: one userdata per wrk thread

function setup(thread)
  thread:set("thread_index", #threads)
  table.insert(threads, thread)
end

-- Running environment (one per wrk thread) ---------------------------------------------------

local token, tag, lag
local base -- thread_index * 10^7: the thread's block of call numbers
local seq = 0 -- requests made by this thread (the prelude not counted)
local prelude = true
local headers = {["Content-Type"] = "application/json"}
non200 = 0 -- globals so that done() can read them through thread:get()
bad_body = 0
duplicates = 0
dials = 0
hangups = 0

function init(args)
  token = args[1] or error("dispatch.lua: TOKEN missing (-- TOKEN TAG LAG)")
  tag = args[2] or error("dispatch.lua: TAG missing (-- TOKEN TAG LAG)")
  lag = tonumber(args[3]) or 2
  base = (thread_index or 0) * 10000000
end

-- Times of a call: StartTime fixed per call, EndTime 5..184 s later (the hangup's duration).
local day = "2025-09-18 "
local function clock(s)
  return string.format("%s%02d:%02d:%02d", day, math.floor(s / 3600) % 24, math.floor(s / 60) % 60,
                       s % 60)
end

-- The event of call n (per thread) of type kind.
local function event(n, kind)
  local call = base + n
  local uid = string.format("%s.%d", tag, call)
  local start = 32400 + call % 36000 -- 09:00:00 + up to 10 h
  local phone = string.format("+37529%07d", call % 10000000)
  local ext = tostring(150 + call % 50)
  local end_time, status
  if kind == "hangup" then
    end_time = clock(start + 5 + call % 180)
    status = (call % 4 == 3) and "0" or "2" -- one call in four missed
  else
    end_time = ""
    status = "0"
  end
  -- CallType 0 (incoming): the caller's number is the phone, the extension is internal
  local body = string.format(
    '{"token":"%s","uniqueId":"%s","event_type":"%s","raw":{"UniqueId":"%s",' ..
    '"Phone":"%s","CallerIDNum":"%s","ConnectedLineNum":"%s","Extensions":["%s"],' ..
    '"CallType":0,"Trunk":"0001363","StartTime":"%s","EndTime":"%s","CallStatus":"%s"}}',
    token, uid, kind, uid, phone, phone, ext, ext, clock(start), end_time, status)
  return wrk.format("POST", "/dispatch/call-event", headers, body)
end

function request()
  if prelude then -- see the top: possibly wrk's check, never sent
    prelude = false
    return event(9999999, "dial")
  end
  local k = seq
  seq = seq + 1
  if k < lag then
    dials = dials + 1
    return event(k, "dial")
  end
  local j = k - lag
  if j % 2 == 0 then
    hangups = hangups + 1
    return event(j / 2, "hangup")
  end
  dials = dials + 1
  return event(lag + (j - 1) / 2, "dial")
end

function response(status, hdrs, body)
  if status ~= 200 then
    non200 = non200 + 1
  elseif not string.find(body, '"success":true', 1, true) then
    bad_body = bad_body + 1
    if string.find(body, '"duplicate"', 1, true) then
      duplicates = duplicates + 1
    end
  end
end

-- done() runs in the setup environment again, after every thread has stopped ------------------

function done(summary, latency, rates)
  local sums = {non200 = 0, bad_body = 0, duplicates = 0, dials = 0, hangups = 0}
  for _, thread in ipairs(threads) do
    for k, _ in pairs(sums) do
      sums[k] = sums[k] + (thread:get(k) or 0)
    end
  end
  local e = summary.errors
  local seconds = summary.duration / 1e6
  io.write(string.format(
    "BENCH requests=%d duration_us=%d rps=%.1f p50_us=%d p99_us=%d max_us=%d non200=%d " ..
    "bad_body=%d duplicates=%d dials=%d hangups=%d " ..
    "errors_connect=%d errors_read=%d errors_write=%d errors_status=%d errors_timeout=%d\n",
    summary.requests, summary.duration, summary.requests / seconds,
    latency:percentile(50.0), latency:percentile(99.0), latency.max, sums.non200,
    sums.bad_body, sums.duplicates, sums.dials, sums.hangups,
    e.connect, e.read, e.write, e.status, e.timeout))
end
