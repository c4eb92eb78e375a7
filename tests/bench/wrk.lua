-- wrk script for tests/bench/run.sh: POSTs the JSON body in $BENCH_BODY_FILE with an Anthropic-style
-- key and prints one machine-readable summary line that starts with "BENCH " (latencies in µs).
-- No response() hook: wrk then never hands bodies to Lua, which keeps the load generator cheap.

local body_file = os.getenv("BENCH_BODY_FILE")
if body_file then
   local f = assert(io.open(body_file, "rb"))
   wrk.body = f:read("*a")
   f:close()
end
wrk.method = "POST"
wrk.headers["content-type"] = "application/json"
wrk.headers["x-api-key"] = os.getenv("BENCH_API_KEY") or "bench-key"

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      "BENCH requests=%d duration_us=%d bytes=%d connect_errors=%d read_errors=%d write_errors=%d status_errors=%d timeouts=%d p50_us=%.1f p90_us=%.1f p99_us=%.1f mean_us=%.1f max_us=%.1f\n",
      summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
      latency:percentile(50.0), latency:percentile(90.0), latency:percentile(99.0), latency.mean, latency.max))
end
