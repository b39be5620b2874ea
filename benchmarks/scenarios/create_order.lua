-- POST /api/v1/orders {"items":[{"book_id":<random id>,"quantity":1}]} (bearer TOKEN): one copy of
-- one random book per order, every book stocked by the runner so that no order is refused.
package.path = "benchmarks/scenarios/?.lua;" .. package.path
local lib = require "lib"
lib.scenario = "create_order"
request = lib.create_order
