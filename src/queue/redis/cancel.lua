-- cancel: a queued job, or a running one whose request was not sent. ARGV: now, id.
-- Answer: {OK, job fields}, {MISSING}, or {WRONG, state, 'sent' | 'ended'}.
local now = num(ARGV[1])
local id = ARGV[2]
local J = jkey(id)
local v = redis.call('HMGET', J, 'state', 'sent')
if not v[1] then
  return {MISSING}
end
if v[1] == 'running' and v[2] == '1' then
  return {WRONG, v[1], 'sent'}
elseif v[1] ~= 'queued' and v[1] ~= 'running' then
  return {WRONG, v[1], 'ended'}
end
finish(id, 'cancelled', now)
return {OK, redis.call('HGETALL', J)}
