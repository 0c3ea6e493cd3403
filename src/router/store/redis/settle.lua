-- settle: KEYS = window zset, window hash, denial, model cool-down, reservation record,
-- reservation expiries, spend totals, current budget keys...
-- ARGV = now|'server', limits (8), id ('0': headers without a request), refund (0/1),
-- actual tokens (-1: none), 6 header fields (-1: absent), rate-limited wait (-1: none),
-- how ('c' commit, 'r' release, 'h' hold, 'n' nothing), paid, nb, nb × (limit, keep_ms).
local Z, M, DENY, COOL, RD, RZ, SP = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local now = clock(ARGV[1])
local L = limits_from(ARGV, 2)
local a = 2 + LIMIT_ARGS
local id, refund, actual = ARGV[a], ARGV[a + 1] == '1', num(ARGV[a + 2])
local H = {}
for i = 0, 5 do H[i + 1] = num(ARGV[a + 3 + i]) end
local wait, how, paid, nb = num(ARGV[a + 9]), ARGV[a + 10], num(ARGV[a + 11]), num(ARGV[a + 12])
local B = budgets_from(KEYS, 8, ARGV, a + 13, nb)
local KEEP = 3600000
local s = load(M)
prune(Z, M, s, now)
local score = nil
local parts = nil
if id ~= '0' and how ~= 'n' then parts = finish(RD, RZ, SP, id, how, paid, B) end
if parts ~= nil then
  local member, at = parts[3], tonumber(parts[4])
  if redis.call('ZSCORE', Z, member) then
    local eid, im, tk, adm = parse_member(member)
    redis.call('ZREM', Z, member)
    if refund then
      s.n = math.max(0, s.n - 1); s.img = math.max(0, s.img - im); s.tok = math.max(0, s.tok - tk)
    else
      -- Used: the entry now counts from its settlement. The provider counted the request
      -- when it reached it, which was before its answer (or, held, before the instance
      -- gave up on it), so the provider's window lets go of it no later than 60 s after
      -- now: an admission that follows can never reach the provider while the provider
      -- still counts this one, however long either spent on the way.
      if actual > 0 then s.tok = math.max(0, s.tok - tk + actual); tk = actual end
      redis.call('ZADD', Z, now, eid .. ':' .. string.format('%d', im) .. ':' .. string.format('%d', tk)
        .. ':' .. string.format('%d', adm or at or now))
    end
  end
  score = at
end
observe(Z, M, s, L, now, H, score)
if wait >= 0 then rate_limited(s, L, now, wait) end
save(M, Z, s, KEEP)
return answer(0, Z, s, L, now, DENY, COOL, SP, B, {})
