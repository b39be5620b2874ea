-- GET /api/v1/books/{id}/cover?v=<version>: a cover image (a ~105 KB JPEG), drawn at random per
-- request from the URLs the app gave the covers the runner uploaded (COVER_URLS_FILE).
package.path = "benchmarks/scenarios/?.lua;" .. package.path
local lib = require "lib"
lib.scenario = "get_cover"
lib.files = { "COVER_URLS_FILE" }
request = lib.get_cover
