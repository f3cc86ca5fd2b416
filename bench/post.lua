-- wrk script: POST bench/order.json as JSON.
local f = assert(io.open(os.getenv("BENCH_PAYLOAD") or "bench/order.json", "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
