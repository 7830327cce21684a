-- POST one fixed JSON body on every request; print wrk's figures as one JSON line.
--
-- Run: wrk -t1 -c8 -d15s -s bench/wrk/post.lua http://127.0.0.1:PORT/predict -- body.json
-- The body file is the first argument after "--". Latencies are in microseconds;
-- non_2xx is wrk's count of answers with status >= 400 (none of the benchmarked
-- servers send 1xx or 3xx).

function init(args)
  local f = assert(io.open(args[1], "rb"), "usage: ... -- BODY_FILE")
  wrk.method = "POST"
  wrk.body = f:read("*a")
  f:close()
  wrk.headers["Content-Type"] = "application/json"
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '\n{"requests": %d, "duration_us": %d, "bytes": %d, "non_2xx": %d, '
      .. '"connect_errors": %d, "read_errors": %d, "write_errors": %d, "timeouts": %d, '
      .. '"p50_us": %d, "p90_us": %d, "p99_us": %d, "mean_us": %.1f, "max_us": %d}\n',
    summary.requests, summary.duration, summary.bytes, e.status,
    e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.mean, latency.max
  ))
end
