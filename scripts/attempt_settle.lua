-- Settle an attempt taken by attempt.lua once its password was checked (or
-- never will be). The hash's layout is attempt.lua's.
-- KEYS[1] the limiter hash
-- ARGV[1] attempt id   ARGV[2] now (unix ms)   ARGV[3] window (ms)
-- ARGV[4] capacity: how many evictable entries the hash may hold; a new one beyond
--   it evicts the one with the fewest failures, whose count becomes the floor
-- ARGV[5..] entry, outcome: 'fail' counts a failed guess; 'reset' (a right password,
--   for a budget a success clears) forgets the entry's failures, not its window;
--   'return' (a right password for a budget a success does not clear, or no
--   password checked) just ends the attempt.
-- Returns 1.
{{template "limiter.lua"}}
local now, window, cap = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
if not ARGV[1] or ARGV[1] == '' or not now or not window or window < 1 or not cap or cap < 1
  or #ARGV < 6 or #ARGV % 2 ~= 0 then
  return redis.error_reply('ERR attempt_settle: bad arguments')
end
local writes = false
for i = 5, #ARGV, 2 do
  local e, o = ARGV[i], ARGV[i + 1]
  if e == '' or string.find(e, '^[@~]') or string.find(e, ' ', 1, true)
    or (o ~= 'fail' and o ~= 'reset' and o ~= 'return') then
    return redis.error_reply('ERR attempt_settle: bad arguments')
  end
  writes = writes or o ~= 'return'
end
-- A window starts when its first failed attempt did, as it would had the
-- attempt failed at once (a bcrypt check takes a while), unless that is a
-- whole window ago.
local taken = redis.call('HGET', KEYS[1], '@' .. ARGV[1])
local from = tonumber(taken and string.match(taken, '^(%d+)') or '') or now
if from + window <= now then from = now end
redis.call('HDEL', KEYS[1], '@' .. ARGV[1])
if not writes then return 1 end

local l = read_limiter(redis.call('HGETALL', KEYS[1]), now, nil)
local count, ends, gone = l.count, l.ends, l.gone
local floor, floorEnd, held = l.floor, l.floorEnd, l.held
if #gone > 0 then redis.call('HDEL', KEYS[1], unpack(gone)) end

for i = 5, #ARGV, 2 do
  local e, o = ARGV[i], ARGV[i + 1]
  if o == 'fail' then
    if count[e] then
      count[e] = count[e] + 1
    else
      local start = 0
      if string.sub(e, 1, 1) ~= '*' then
        start = floor
        if held >= cap then
          -- Evict the entry with the fewest failures (the soonest to end among
          -- equals); it and every entry the hash lacks count from its failures now.
          local victim
          for f, n in pairs(count) do
            if string.sub(f, 1, 1) ~= '*' and (not victim or n < count[victim]
              or (n == count[victim] and ends[f] < ends[victim])) then
              victim = f
            end
          end
          if victim then
            if count[victim] > floor then floor = count[victim] end
            if ends[victim] > floorEnd then floorEnd = ends[victim] end
            start = floor
            redis.call('HDEL', KEYS[1], victim)
            count[victim], ends[victim] = nil, nil
            redis.call('HSET', KEYS[1], '~', floor .. ' ' .. floorEnd)
          end
        else
          held = held + 1
        end
      end
      count[e], ends[e] = start + 1, from + window
    end
    redis.call('HSET', KEYS[1], e, count[e] .. ' ' .. ends[e])
  elseif o == 'reset' and count[e] then
    count[e] = 0
    redis.call('HSET', KEYS[1], e, '0 ' .. ends[e])
  end
end
redis.call('PEXPIRE', KEYS[1], window)
return 1
