-- requests.lua - send a list of distinct pre-signed KMS requests with wrk, each
-- at most once, and report in JSON.
--
-- request.lua replays one request, which suits reads; a write such as
-- CreateAlias or ScheduleKeyDeletion succeeds once per name or key, so
-- writes/bench_writes.py signs one request per write and lists them in the
-- file named by BENCH_REQUESTS: for each, a line with its length in bytes,
-- then that many bytes in request.lua's format (method and path, header
-- lines, a blank line, the body).  BENCH_THREADS is wrk's -t.
--
-- Each wrk thread takes its own contiguous, disjoint share of the list and
-- sends it in order.  A thread whose share runs out stops (wrk.thread:stop())
-- rather than send anything twice; the request wrk still asks for at that
-- moment is an unsigned GET /health, which changes nothing.  Note that wrk
-- asks thread 0 for one request before the run to check that it parses: that
-- one counts as handed out but is never sent.
-- done() prints the JSON line of request.lua plus "listed" (requests in the
-- file), "handed_out" and "ran_out" (threads whose share ran out: they sat
-- idle for the rest of the run, so its rate is then a lower bound).

local threads = {}

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

-- One request of the file, as the bytes wrk sends.
local function parse(text)
  local head, body = text:match("^(.-)\r?\n\r?\n(.*)$")
  assert(head, "a request lacks the blank line before the body")
  local method, path
  local headers = {}
  for line in head:gmatch("[^\r\n]+") do
    if not method then
      method, path = line:match("^(%S+)%s+(%S+)$")
      assert(method, "a request's first line is not 'METHOD PATH'")
    else
      local name, value = line:match("^([^:]+):%s*(.*)$")
      headers[name] = value
    end
  end
  return wrk.format(method, path, headers, body)
end

local share = {}
local nexti = 1
listed = 0
handed_out = 0
ran_out = false
local idle

function init(args)
  local count = tonumber(os.getenv("BENCH_THREADS") or "")
  assert(count and id and id < count, "BENCH_THREADS must be wrk's -t")
  local file = assert(io.open(os.getenv("BENCH_REQUESTS") or "", "rb"),
                      "BENCH_REQUESTS must name a request list")
  local texts = {}
  while true do
    local line = file:read("*l")
    if not line then break end
    local n = assert(tonumber(line), "a length line is not a number")
    local text = file:read(n)
    assert(text and #text == n, "the request list is truncated")
    texts[#texts + 1] = text
  end
  file:close()
  listed = #texts
  local first = math.floor(listed * id / count) + 1
  local last = math.floor(listed * (id + 1) / count)
  for i = first, last do
    share[#share + 1] = parse(texts[i])
  end
  idle = wrk.format("GET", "/health", {}, nil)
end

function request()
  local req = share[nexti]
  if req then
    share[nexti] = nil
    nexti = nexti + 1
    handed_out = handed_out + 1
    return req
  end
  if not ran_out then
    ran_out = true
    wrk.thread:stop()
  end
  return idle
end

function done(summary, latency, requests)
  local errors = summary.errors
  local handed, exhausted = 0, 0
  for _, thread in ipairs(threads) do
    handed = handed + thread:get("handed_out")
    if thread:get("ran_out") then exhausted = exhausted + 1 end
  end
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "max_us": %d, ' ..
    '"non2xx": %d, "socket_errors": %d, "listed": %d, "handed_out": %d, "ran_out": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency.max, errors.status, errors.connect + errors.read + errors.write + errors.timeout,
    threads[1] and threads[1]:get("listed") or 0, handed, exhausted))
end
