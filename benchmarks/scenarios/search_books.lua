-- GET /api/v1/books?q=<word>&limit=20: a text search for a word of the seed's vocabulary, drawn at
-- random per request from SEARCH_WORDS_FILE (each word is in roughly 3.5-8 % of the books).
package.path = "benchmarks/scenarios/?.lua;" .. package.path
local lib = require "lib"
lib.scenario = "search_books"
lib.files = { "SEARCH_WORDS_FILE" }
request = lib.search_books
