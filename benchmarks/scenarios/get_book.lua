-- GET /api/v1/books/{id} for random ids in 1..MAX_ID (anonymous, like public browsing).
package.path = "benchmarks/scenarios/?.lua;" .. package.path
local lib = require "lib"
lib.scenario = "get_book"
request = lib.get_book
