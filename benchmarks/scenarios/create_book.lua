-- POST /api/v1/books (bearer TOKEN) with a unique, valid ISBN-13 per request (see lib.next_isbn).
package.path = "benchmarks/scenarios/?.lua;" .. package.path
local lib = require "lib"
lib.scenario = "create_book"
request = lib.create_book
