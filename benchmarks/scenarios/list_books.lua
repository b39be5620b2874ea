-- GET /api/v1/books?limit=20: the catalogue's default page (newest first, no filters), anonymous:
-- the count of the books up to 1000, then the page.
package.path = "benchmarks/scenarios/?.lua;" .. package.path
local lib = require "lib"
lib.scenario = "list_books"
request = lib.list_books
