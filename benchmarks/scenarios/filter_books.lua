-- GET /api/v1/books?min_price=A&max_price=A+20&sort=-price&limit=20: a filtered, sorted page of 20
-- (the count of the matches up to 1000, then the page), with a random price window so pages differ.
package.path = "benchmarks/scenarios/?.lua;" .. package.path
local lib = require "lib"
lib.scenario = "filter_books"
request = lib.filter_books
