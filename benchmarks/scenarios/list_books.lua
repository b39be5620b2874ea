-- GET /api/v1/books?min_price=A&max_price=A+20&sort=-price&limit=20: a filtered, sorted page of 20
-- (the count of all matches plus the page), with a random price window so pages differ.
package.path = "benchmarks/scenarios/?.lua;" .. package.path
local lib = require "lib"
lib.scenario = "list_books"
request = lib.list_books
