-- READ_PCT% (default 90) get_book, the rest create_book, drawn at random per request.
package.path = "benchmarks/scenarios/?.lua;" .. package.path
local lib = require "lib"
lib.scenario = "mixed"

function request()
  if math.random(100) <= lib.read_pct then return lib.get_book() end
  return lib.create_book()
end
