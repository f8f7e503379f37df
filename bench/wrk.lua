-- wrk script of `go run ./bench -load wrk`: every request carries
-- "Authorization: Bearer <token>", a token picked at random from a token
-- file the bench wrote (records of a fixed width: the token, spaces, a
-- newline). Arguments after wrk's "--": the file, the record width without
-- the newline, the number of tokens, a random seed, and "prebuilt" or
-- "mapped".
--
-- prebuilt (a small file, the comparison's): the file is read once into
-- requests built ahead, so a request costs wrk a table lookup.
-- mapped (the scale's, whatever the size): the file is copied once into
-- memory outside Lua, and each request is built from its record. A million
-- tokens are hundreds of MB: as Lua strings, every garbage collection would
-- walk them all; read a record at a time, each request would cost wrk two
-- system calls; mapped from the page cache, in 4 KiB pages, nearly every
-- random record costs a TLB miss. The copy is in anonymous memory advised
-- for huge pages (2 MiB), so a request costs wrk about the same at a
-- thousand tokens as at a million, and the scale's curve is the server's,
-- not wrk's. Either way the work is wrk's CPU, which the bench counts apart
-- from the server's.

local ffi = require("ffi")
ffi.cdef [[
int open(const char *path, int flags);
int close(int fd);
long read(int fd, void *buf, size_t count);
void *mmap(void *addr, size_t length, int prot, int flags, int fd, long offset);
int madvise(void *addr, size_t length, int advice);
]]

local reqs, base, width, count, prefix, suffix

function init(args)
   local path = args[1]
   width, count = tonumber(args[2]), tonumber(args[3])
   math.randomseed(tonumber(args[4]) or os.time())
   if args[5] == "mapped" then
      local size = count * (width + 1)
      -- PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, then MADV_HUGEPAGE
      -- (advice only: without huge pages it still works, in small ones).
      local p = ffi.C.mmap(nil, size, 3, 0x22, -1, 0)
      assert(ffi.cast("intptr_t", p) ~= -1, "cannot map " .. size .. " bytes")
      ffi.C.madvise(p, size, 14)
      local fd = ffi.C.open(path, 0) -- O_RDONLY
      assert(fd >= 0, "cannot open " .. path)
      local buf, done = ffi.cast("uint8_t *", p), 0
      while done < size do
         local n = tonumber(ffi.C.read(fd, buf + done, size - done))
         assert(n > 0, "cannot read " .. path)
         done = done + n
      end
      ffi.C.close(fd)
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
