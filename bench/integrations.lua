-- wrk script for bench/run.sh: cache-hit GETs, rotating over a list of paths.
-- Usage: wrk ... -s bench/integrations.lua http://HOST:PORT -- PATHS_FILE [DEPTH]
--   PATHS_FILE holds one request path a line (run.sh writes /integrations/{n} for every enterprise,
--   or /config/{n}/{type} with a type the enterprise has); requests walk the list in order, each
--   wrk thread starting at a different offset so that threads do not walk in lock-step.
--   DEPTH (default 1) > 1 pipelines: every write carries DEPTH requests (wrk.format(...) of DEPTH
--   consecutive paths, concatenated), wrk sends the next batch when all DEPTH answers are in, and
--   its latency is then per batch, not per request; requests/s still counts every answer.
-- The same script drives the service and the nginx reference (whose locations answer every
-- /integrations/ and /config/ path), so both servers see the same requests and wrk pays the same
-- Lua cost. Requests are pre-formatted in init() (the wrk manual's advice), so request() is a
-- table lookup.
-- response() counts every status other than 200; done() prints one machine-readable line,
--   BENCH requests=... duration_us=... rps=... p50_us=... p99_us=... non200=... errors=...
-- which run.sh parses. A run with non200 > 0 or socket errors is reported as failed, not as a rate.

local threads = {} -- setup()/done() environment: one userdata per wrk thread

function setup(thread)
  thread:set("thread_index", #threads)
  table.insert(threads, thread)
end

-- Running environment (one per wrk thread) ---------------------------------------------------

local requests = {}
local next_request = 1
non200 = 0 -- global so that done() can read it through thread:get()

function init(args)
  local file = args[1] or error("usage: -- PATHS_FILE [DEPTH]")
  local depth = tonumber(args[2]) or 1
  local paths = {}
  for line in io.lines(file) do
    if line ~= "" then
      paths[#paths + 1] = line
    end
  end
  assert(#paths > 0, "no paths in " .. file)
  for i = 1, #paths do
    local batch = {}
    for k = 0, depth - 1 do
      batch[#batch + 1] = wrk.format("GET", paths[(i - 1 + k) % #paths + 1])
    end
    requests[#requests + 1] = table.concat(batch)
  end
  -- spread the threads over the range: thread k starts 397*k entries in, so that two threads do
  -- not ask for the same enterprise at the same moment
  local index = thread_index or 0
  next_request = (index * 397) % #requests + 1
end

function request()
  local r = requests[next_request]
  next_request = next_request + 1
  if next_request > #requests then
    next_request = 1
  end
  return r
end

function response(status, headers, body)
  if status ~= 200 then
    non200 = non200 + 1
  end
end

-- done() runs in the setup environment again, after every thread has stopped ------------------

function done(summary, latency, rates)
  local bad = 0
  for _, thread in ipairs(threads) do
    bad = bad + (thread:get("non200") or 0)
  end
  local e = summary.errors
  local seconds = summary.duration / 1e6
  io.write(string.format(
    "BENCH requests=%d duration_us=%d rps=%.1f p50_us=%d p99_us=%d max_us=%d non200=%d " ..
    "errors_connect=%d errors_read=%d errors_write=%d errors_status=%d errors_timeout=%d\n",
    summary.requests, summary.duration, summary.requests / seconds,
    latency:percentile(50.0), latency:percentile(99.0), latency.max, bad,
    e.connect, e.read, e.write, e.status, e.timeout))
end
