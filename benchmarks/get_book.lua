-- GET /api/v1/books/{id} for random ids in 1..MAX_ID (env, default 10000).
-- Prints one machine-readable line from done(); fails loudly on any non-2xx response.
local threads, counter = {}, 1

function setup(thread)
  thread:set("id", counter)
  table.insert(threads, thread)
  counter = counter + 1
end

function init(args)
  max_id = tonumber(os.getenv("MAX_ID") or "10000")
  math.randomseed(os.time() + id * 7919)
  non2xx = 0
end

function request()
  return wrk.format("GET", "/api/v1/books/" .. math.random(1, max_id))
end

function response(status, headers, body)
  if status < 200 or status > 299 then non2xx = non2xx + 1 end
end

function done(summary, latency, requests)
  local bad = 0
  for _, thread in ipairs(threads) do bad = bad + thread:get("non2xx") end
  local seconds = summary.duration / 1e6
  io.write(string.format(
    'RESULT {"scenario":"get_book","rps":%.1f,"p50_ms":%.2f,"p99_ms":%.2f,"p999_ms":%.2f,"non2xx":%d}\n',
    summary.requests / seconds, latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    latency:percentile(99.9) / 1000, bad))
end
