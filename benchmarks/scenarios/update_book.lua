-- PATCH /api/v1/books/{random id} {"price": "x.yy"} (bearer TOKEN of an admin: seeded books have
-- no owner, so only an admin may change them). Unconditional: no If-Match.
package.path = "benchmarks/scenarios/?.lua;" .. package.path
local lib = require "lib"
lib.scenario = "update_book"
request = lib.update_book
