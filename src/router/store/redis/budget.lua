-- budget: the router-wide budgets (another hash slot). KEYS = reservation record,
-- reservation expiries, spend totals, budget keys...
-- ARGV = now|'server', op ('reserve' / 'c' / 'r' / 'h'), id, ttl, amount, nb, nb × (limit, keep_ms).
local RD, RZ, SP = KEYS[1], KEYS[2], KEYS[3]
local now = clock(ARGV[1])
local op, id, ttl, amount, nb = ARGV[2], ARGV[3], num(ARGV[4]), num(ARGV[5]), num(ARGV[6])
local B = budgets_from(KEYS, 4, ARGV, 7, nb)
sweep(RD, RZ, SP, now)
if op == 'reserve' then
  local j = budget_refuses(B, amount)
  if j ~= nil then
    local spent, reserved, held = budget_state(B[j].key)
    return {j, spent, reserved, held}
  end
  reserve(RD, RZ, B, id, amount, now + ttl, '')
  return {0}
end
finish(RD, RZ, SP, id, op, amount, B)
return {0}
