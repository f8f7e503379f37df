-- wrk script of `go run ./bench -load wrk`: every request carries
-- "Authorization: Bearer <token>", a token picked at random from a token
-- file the bench wrote (records of a fixed width: the token, spaces, a
-- newline). Arguments after wrk's "--": the file, the record width without
-- the newline, the number of tokens, a random seed.
--
-- A small file is read once into prebuilt requests; a large one (a million
-- tokens are hundreds of MB) is read a record at a time by seeking, so wrk's
-- memory stays small. Either way the work is wrk's CPU, which the bench
-- counts apart from the server's.

local reqs, file, width, count

local function bearer(rec)
   return wrk.format(nil, nil, { Authorization = "Bearer " .. rec:match("^(%S+)") })
end

function init(args)
   local path = args[1]
   width, count = tonumber(args[2]), tonumber(args[3])
   math.randomseed(tonumber(args[4]) or os.time())
   file = assert(io.open(path, "rb"))
   if count <= 100000 then
      reqs = {}
      for i = 1, count do
         reqs[i] = bearer(file:read(width + 1))
      end
      file:close()
      file = nil
   end
end

function request()
   if reqs then
      return reqs[math.random(count)]
   end
   file:seek("set", (math.random(count) - 1) * (width + 1))
   return bearer(file:read(width))
end

-- One line the bench parses: latencies in microseconds.
function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format("sessiond-bench-wrk requests=%d duration_us=%d p50_us=%d p99_us=%d errors=%d status_errors=%d\n",
      summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
      e.connect + e.read + e.write + e.timeout + e.status, e.status))
end
