-- request.lua - replay one pre-signed KMS request with wrk and report in JSON.
--
-- wrk cannot sign, so bench.py writes each signed request to a file (method,
-- path, header lines, a blank line, the body) and names it in BENCH_REQUEST.
-- Every connection replays those exact bytes; SigV4 allows that for five
-- minutes after the signing time, longer than any single run.
-- done() prints one JSON line that bench.py parses: wrk's own summary is
-- for people, this is for the table.

local path = os.getenv("BENCH_REQUEST")
local file = assert(io.open(path or "", "rb"), "BENCH_REQUEST must name a request file")
local text = file:read("*a")
file:close()

local head, body = text:match("^(.-)\r?\n\r?\n(.*)$")
assert(head, "request file lacks the blank line before the body")
local first = true
for line in head:gmatch("[^\r\n]+") do
  if first then
    wrk.method, wrk.path = line:match("^(%S+)%s+(%S+)$")
    first = false
  else
    local name, value = line:match("^([^:]+):%s*(.*)$")
    wrk.headers[name] = value
  end
end
wrk.body = body

function done(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "max_us": %d, ' ..
    '"non2xx": %d, "socket_errors": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency.max, errors.status, errors.connect + errors.read + errors.write + errors.timeout))
end
