-- Shared machinery of the wrk scenarios. A scenario loads it with
--
--   package.path = "benchmarks/scenarios/?.lua;" .. package.path   -- wrk runs from the repo root
--   local lib = require "lib"
--   lib.scenario = "get_book"
--   request = lib.get_book
--
-- and gets setup()/init()/response()/done() (and delay() when RATE is set) from here. A scenario
-- that draws from a file names the file's environment variable in lib.files (init() reads it into
-- lib.lines[name]).
--
-- Environment:
--   TOKEN          bearer access token; sent only with writes (reads are anonymous, like public browsing)
--   MAX_ID         highest seeded book id (default 10000); reads, updates and orders pick ids in MIN_ID..MAX_ID
--   MIN_ID         lowest seeded book id (default 1)
--   RATE           optional fixed total rate in requests/s (see delay() below)
--   CONNECTIONS    wrk's -c, needed with RATE (default 64); THREADS: wrk's -t (default 1)
--   ISBN_SLOT      0..99, the run-unique part of created ISBNs (default: os.time() % 100)
--   ISBN_SKIP_FILE optional file of ISBN-13s (one a line) already in the database, never generated
--   READ_PCT       share of reads in mixed.lua (default 90)
--   SEARCH_WORDS_FILE  search words, URL-encoded, one a line (search_books.lua)
--   CURSOR_FILE    page cursors of the default listing, one a line (deep_cursor.lua)
--   COVER_URLS_FILE  cover URLs as the app gave them (with v), one a line (get_cover.lua)
--
-- done() prints ONE line:
--   RESULT {"scenario":..., "rps":..., "p50_ms":..., "p99_ms":..., "p999_ms":..., "non2xx":..., "requests":..., ...}
-- with non2xx summed over all threads, the count of every status seen, wrk's socket errors and the
-- first non-2xx response (status and start of the body) for diagnosis.

local lib = {}
lib.scenario = "unnamed"
lib.files = {}
lib.lines = {}

local threads, counter = {}, 1

local function env_number(name, default)
  local value = os.getenv(name)
  if value == nil or value == "" then return default end
  local number = tonumber(value)
  if number == nil then error(name .. " must be a number, got " .. value) end
  return number
end

lib.min_id = env_number("MIN_ID", 1)
lib.max_id = env_number("MAX_ID", 10000)
lib.read_pct = env_number("READ_PCT", 90)
local rate = env_number("RATE", nil)
local connections = env_number("CONNECTIONS", 64)
local wrk_threads = env_number("THREADS", 1)

-- wrk runs setup() in the main Lua state for each thread, then init() in the thread's own state.
function setup(thread)
  thread:set("id", counter)
  table.insert(threads, thread)
  counter = counter + 1
end

local json_headers, auth_json_headers

function init(args)
  -- Every thread has its own Lua state and would otherwise replay the same "random" sequence.
  math.randomseed(os.time() + id * 7919)
  non2xx, statuses, first_error = 0, {}, ""
  isbn_seq = 0
  local base = env_number("ISBN_SLOT", os.time() % 100)
  isbn_slot = (base + id - 1) % 100
  isbn_skip = {}
  local skip_file = os.getenv("ISBN_SKIP_FILE")
  if skip_file and skip_file ~= "" then
    for line in io.lines(skip_file) do isbn_skip[line] = true end
  end
  -- wrk.format(method, path, headers, body) REPLACES wrk.headers when given a table: copy them in.
  json_headers = {}
  for name, value in pairs(wrk.headers) do json_headers[name] = value end
  json_headers["Content-Type"] = "application/json"
  auth_json_headers = {}
  for name, value in pairs(json_headers) do auth_json_headers[name] = value end
  local token = os.getenv("TOKEN")
  if token and token ~= "" then auth_json_headers["Authorization"] = "Bearer " .. token end
  for _, name in ipairs(lib.files) do
    local path = os.getenv(name)
    if path == nil or path == "" then error(lib.scenario .. " needs " .. name .. " (a file, one entry a line)") end
    local lines = {}
    for line in io.lines(path) do
      if line ~= "" then table.insert(lines, line) end
    end
    if #lines == 0 then error(name .. " (" .. path .. ") is empty") end
    lib.lines[name] = lines
  end
end

function response(status, headers, body)
  local key = tostring(status)
  statuses[key] = (statuses[key] or 0) + 1
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
    if first_error == "" then first_error = key .. " " .. string.sub(body or "", 1, 300) end
  end
end

-- Fixed-rate runs: RATE requests/s in total, i.e. RATE/CONNECTIONS per connection (one request
-- every CONNECTIONS*1000/RATE ms). wrk calls delay() before each request of a connection but does
-- not say which connection, so each thread keeps one schedule of send slots, RATE/THREADS per
-- second, and every call claims the next slot: the same total rate, with the time spent waiting for
-- the previous response taken into account. A schedule that falls behind (slow responses) may
-- catch up by at most one second's worth of requests. wrk stays closed-loop: a connection waits for
-- its response, and latency is measured from the actual send, so when latency exceeds the
-- per-connection interval requests go out late and their queueing is not seen (coordinated
-- omission); the achieved rate then drops below RATE, which is the sign to look for.
if rate then
  local ok, ffi = pcall(require, "ffi")
  local now_ms
  if ok then
    ffi.cdef [[
      typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
      int clock_gettime(int clock_id, bench_timespec *tp);
    ]]
    local ts = ffi.new("bench_timespec")
    now_ms = function()
      ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
      return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
    end
  end
  local interval_ms = connections * 1000 / rate -- per connection
  local step_ms = wrk_threads * 1000 / rate -- per thread
  local next_slot
  function delay()
    if not now_ms then return math.floor(interval_ms) end -- no clock: plain per-connection pause
    local now = now_ms()
    if next_slot == nil or next_slot < now - 1000 then next_slot = math.max(next_slot or now, now - 1000) end
    local wait = next_slot - now
    next_slot = next_slot + step_ms
    if wait <= 0 then return 0 end
    return math.floor(wait)
  end
end

local function json_string(text)
  local escaped = string.gsub(text, '[%c"\\]', function(char)
    if char == '"' then return '\\"' end
    if char == "\\" then return "\\\\" end
    return string.format("\\u%04x", string.byte(char))
  end)
  -- Drop bytes that are not ASCII so a truncated multi-byte character cannot break the JSON.
  escaped = string.gsub(escaped, "[\128-\255]", "?")
  return '"' .. escaped .. '"'
end

function done(summary, latency, requests)
  local bad, seen, first = 0, {}, ""
  for _, thread in ipairs(threads) do
    bad = bad + thread:get("non2xx")
    for status, count in pairs(thread:get("statuses") or {}) do seen[status] = (seen[status] or 0) + count end
    if first == "" then first = thread:get("first_error") or "" end
  end
  local parts = {}
  for status, count in pairs(seen) do table.insert(parts, string.format('"%s":%d', status, count)) end
  table.sort(parts)
  local seconds = summary.duration / 1e6
  local errors = summary.errors
  io.write(string.format(
    'RESULT {"scenario":%s,"rps":%.1f,"p50_ms":%.2f,"p99_ms":%.2f,"p999_ms":%.2f,"non2xx":%d,"requests":%d,'
      .. '"duration_s":%.2f,"rate":%s,"connections":%d,"statuses":{%s},'
      .. '"socket_errors":{"connect":%d,"read":%d,"write":%d,"timeout":%d},"first_error":%s}\n',
    json_string(lib.scenario), summary.requests / seconds, latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, latency:percentile(99.9) / 1000, bad, summary.requests, seconds,
    rate and string.format("%g", rate) or "null", connections, table.concat(parts, ","),
    errors.connect, errors.read, errors.write, errors.timeout, json_string(first)))
end

-- Requests -------------------------------------------------------------------------------------

function lib.random_id()
  return math.random(lib.min_id, lib.max_id)
end

function lib.random_price()
  return string.format("%d.%02d", math.random(1, 99), math.random(0, 99))
end

local function isbn13_check_digit(twelve)
  local total = 0
  for index = 1, 12 do
    local digit = string.byte(twelve, index) - 48
    total = total + (index % 2 == 0 and 3 or 1) * digit
  end
  return tostring((10 - total % 10) % 10)
end
lib.isbn13_check_digit = isbn13_check_digit

-- A valid ISBN-13 never produced before in this run: 979, a two-digit slot (the run-unique ISBN_SLOT
-- plus the thread id), then a seven-digit per-thread sequence, then the check digit. ISBNs listed in
-- ISBN_SKIP_FILE (the seeded books) are skipped, so a create never collides with them.
function lib.next_isbn()
  while true do
    isbn_seq = isbn_seq + 1
    if isbn_seq > 9999999 then error("ISBN sequence of slot " .. isbn_slot .. " exhausted") end
    local stem = string.format("979%02d%07d", isbn_slot, isbn_seq)
    local isbn = stem .. isbn13_check_digit(stem)
    if not isbn_skip[isbn] then return isbn end
  end
end

function lib.get_book()
  return wrk.format("GET", "/api/v1/books/" .. lib.random_id())
end

local function pick(name)
  local lines = lib.lines[name]
  return lines[math.random(#lines)]
end

function lib.list_books()
  -- The catalogue's first page: newest first, no filters (the count up to 1000, then the page).
  return wrk.format("GET", "/api/v1/books?limit=20")
end

function lib.filter_books()
  -- A 20-unit price window anywhere in the seeded range (prices 1.99..89.98), most expensive first.
  local low = math.random(0, 7000)
  local path = string.format(
    "/api/v1/books?min_price=%d.%02d&max_price=%d.%02d&sort=-price&limit=20",
    math.floor(low / 100), low % 100, math.floor(low / 100) + 20, low % 100)
  return wrk.format("GET", path)
end

function lib.search_books()
  -- A word of the seed's vocabulary (SEARCH_WORDS_FILE, already URL-encoded), newest matches first.
  return wrk.format("GET", "/api/v1/books?q=" .. pick("SEARCH_WORDS_FILE") .. "&limit=20")
end

function lib.deep_cursor()
  -- A page deep in the default listing, through a cursor the app issued (CURSOR_FILE: base64url, URL-safe).
  return wrk.format("GET", "/api/v1/books?limit=20&cursor=" .. pick("CURSOR_FILE"))
end

function lib.get_cover()
  -- A cover the runner uploaded, by the URL the app gave for it (with v: the cacheable form); no
  -- If-None-Match, so every response carries the image.
  return wrk.format("GET", pick("COVER_URLS_FILE"))
end

function lib.create_book()
  local isbn = lib.next_isbn()
  local body = string.format(
    '{"title":"Benchmark Book %d-%d","author":"Load Tester","publish_date":"2020-01-01","isbn":"%s","price":"%s"}',
    id, isbn_seq, isbn, lib.random_price())
  return wrk.format("POST", "/api/v1/books", auth_json_headers, body)
end

function lib.update_book()
  local body = string.format('{"price":"%s"}', lib.random_price())
  return wrk.format("PATCH", "/api/v1/books/" .. lib.random_id(), auth_json_headers, body)
end

function lib.create_order()
  -- One copy of one book drawn uniformly; the runner stocks every book beyond what a run can order.
  local body = string.format('{"items":[{"book_id":%d,"quantity":1}]}', lib.random_id())
  return wrk.format("POST", "/api/v1/orders", auth_json_headers, body)
end

return lib
