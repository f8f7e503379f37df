-- wrk script of `go run ./bench -load wrk`: every request carries
-- "Authorization: Bearer <token>", a token picked at random from a token
-- file the bench wrote (records of a fixed width: the token, spaces, a
-- newline). Arguments after wrk's "--": the file, the record width without
-- the newline, the number of tokens, a random seed, and "prebuilt" or
-- "mapped".
--
-- prebuilt (a small file, the comparison's): the file is read once into
-- requests built ahead, so a request costs wrk a table lookup.
-- mapped (the scale's, whatever the size): the file is mapped into memory,
-- not read into Lua, and each request is built from its record. A million
-- tokens are hundreds of MB: as Lua strings, every garbage collection would
-- walk them all; read a record at a time, each request would cost wrk two
-- system calls. Mapped, a request costs wrk the same at a thousand tokens
-- as at a million, so the scale's curve is the server's, not wrk's. Either
-- way the work is wrk's CPU, which the bench counts apart from the server's.

local ffi = require("ffi")
ffi.cdef [[
int open(const char *path, int flags);
int close(int fd);
void *mmap(void *addr, size_t length, int prot, int flags, int fd, long offset);
]]

local reqs, base, width, count, prefix, suffix

function init(args)
   local path = args[1]
   width, count = tonumber(args[2]), tonumber(args[3])
   math.randomseed(tonumber(args[4]) or os.time())
   if args[5] == "mapped" then
      local fd = ffi.C.open(path, 0) -- O_RDONLY
      assert(fd >= 0, "cannot open " .. path)
      -- PROT_READ, MAP_SHARED: the page cache's copy, shared with the bench.
      local p = ffi.C.mmap(nil, count * (width + 1), 1, 1, fd, 0)
      ffi.C.close(fd)
      assert(ffi.cast("intptr_t", p) ~= -1, "cannot map " .. path)
      base = ffi.cast("const uint8_t *", p)
      prefix, suffix = wrk.format(nil, nil, { Authorization = "Bearer \1" }):match("^(.-)\1(.*)$")
      return
   end
   local file = assert(io.open(path, "rb"))
   reqs = {}
   for i = 1, count do
      local tok = file:read(width + 1):match("^(%S+)")
      reqs[i] = wrk.format(nil, nil, { Authorization = "Bearer " .. tok })
   end
   file:close()
end

function request()
   if reqs then
      return reqs[math.random(count)]
   end
   local p = base + (math.random(count) - 1) * (width + 1)
   local n = width
   while n > 0 and p[n - 1] == 32 do n = n - 1 end -- the record's padding
   return prefix .. ffi.string(p, n) .. suffix
end

-- One line the bench parses: latencies in microseconds.
function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format("sessiond-bench-wrk requests=%d duration_us=%d p50_us=%d p99_us=%d errors=%d status_errors=%d\n",
      summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
      e.connect + e.read + e.write + e.timeout + e.status, e.status))
end
