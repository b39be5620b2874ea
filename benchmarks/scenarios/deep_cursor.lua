-- GET /api/v1/books?limit=20&cursor=<c>: a page between the middle and the end of the default
-- listing, through a cursor drawn at random per request from CURSOR_FILE (the runner signs them).
package.path = "benchmarks/scenarios/?.lua;" .. package.path
local lib = require "lib"
lib.scenario = "deep_cursor"
lib.files = { "CURSOR_FILE" }
request = lib.deep_cursor
