-- last_use is the last seen (unix ms) of a use record ("<ms> <ip>", in the
-- user's use hash), 0 for none.
local function last_use(v)
  return v and tonumber(string.match(v, '^(%d+)')) or 0
end
