-- admit: KEYS = window zset, window hash, denial, model cool-down, reservation record,
-- reservation expiries, spend totals, budget keys...
-- ARGV = now|'server', limits (8), images, tokens, id, ttl, amount, dry ('1': check only),
-- nb, then nb × (limit, keep_ms).
local Z, M, DENY, COOL, RD, RZ, SP = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local now = clock(ARGV[1])
local L = limits_from(ARGV, 2)
local a = 2 + LIMIT_ARGS
local images, tokens, id, ttl, amount, dry, nb =
  num(ARGV[a]), num(ARGV[a + 1]), ARGV[a + 2], num(ARGV[a + 3]), num(ARGV[a + 4]), ARGV[a + 5] == '1', num(ARGV[a + 6])
local B = budgets_from(KEYS, 8, ARGV, a + 7, nb)
local KEEP = 3600000
local s = load(M)
prune(Z, M, s, now)
if not dry then sweep(RD, RZ, SP, now) end
local d = redis.call('HGET', DENY, 'until')
if d and num(d) > now then return answer(1, Z, s, L, now, DENY, COOL, SP, B, {}) end
local c = redis.call('HGET', COOL, 'until')
if c and num(c) > now then return answer(2, Z, s, L, now, DENY, COOL, SP, B, {}) end
local refused = check(Z, s, L, now, images, tokens)
if refused ~= nil then
  if not dry then save(M, Z, s, KEEP) end
  return answer(refused[1], Z, s, L, now, DENY, COOL, SP, B, {refused[2], refused[3], refused[4]})
end
local j = budget_refuses(B, amount)
if j ~= nil then
  if not dry then save(M, Z, s, KEEP) end
  return answer(7, Z, s, L, now, DENY, COOL, SP, B, {j})
end
if dry then return answer(0, Z, s, L, now, DENY, COOL, SP, B, {}) end
-- In flight from now on: scored at the end of its reservation's time-to-live (see
-- `in_flight`), it stays in the window until it is settled, and then for 60 s from the
-- settlement (settle.lua).
local member = id .. ':' .. string.format('%d', images) .. ':' .. string.format('%d', tokens)
  .. ':' .. string.format('%d', now)
redis.call('ZADD', Z, now + math.max(ttl, WINDOW), member)
s.n = s.n + 1; s.img = s.img + images; s.tok = s.tok + tokens
save(M, Z, s, KEEP)
reserve(RD, RZ, B, id, amount, now + ttl, member .. '|' .. string.format('%d', now))
return answer(0, Z, s, L, now, DENY, COOL, SP, B, {})
