-- wrk script of the benchmark: POST pre-built JSON bodies and print the run's totals as one JSON line.
-- Arguments (after "--"): a file of "PATH<TAB>BODY" lines, then an optional pause in ms before each request
-- (the soak's steady rate). Requests are formatted once in init(), so request() costs wrk almost nothing.
local prepared = {}
local index = 0
local pause = 0

function init(args)
  for line in io.lines(args[1]) do
    local path, body = line:match("^([^\t]+)\t(.*)$")
    if path then
      prepared[#prepared + 1] = wrk.format("POST", path, {["Content-Type"] = "application/json"}, body)
    end
  end
  pause = tonumber(args[2] or "0") or 0
  if pause > 0 then
    -- wrk only waits between requests when a delay() function exists, so define it only when asked.
    delay = function() return pause end
  end
end

function request()
  index = index % #prepared + 1
  return prepared[index]
end

function done(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "duration_us": %d, "bytes": %d, "connect": %d, "read": %d, "write": %d, ' ..
    '"status": %d, "timeout": %d, "p50_us": %d, "p99_us": %d, "mean_us": %.1f, "max_us": %d}\n',
    summary.requests, summary.duration, summary.bytes, errors.connect, errors.read, errors.write,
    errors.status, errors.timeout, latency:percentile(50), latency:percentile(99), latency.mean, latency.max))
end
