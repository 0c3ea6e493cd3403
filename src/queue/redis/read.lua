-- read: records and figures, in one consistent step.
-- ARGV: op, then per op:
--   list    state ('' any), limit      → flat array of job field arrays
--   stats   -                          → {queued, running, oldest queued submission ('' none)}
local op = ARGV[1]
if op == 'list' then
  local Z = (ARGV[2] == '') and key('all') or key('st:' .. ARGV[2])
  local out = {}
  for _, id in ipairs(redis.call('ZRANGE', Z, 0, num(ARGV[3]) - 1)) do
    local f = redis.call('HGETALL', jkey(id))
    if #f > 0 then
      out[#out + 1] = f
    end
  end
  return out
elseif op == 'stats' then
  local o = redis.call('ZRANGE', key('st:queued'), 0, 0, 'WITHSCORES')
  return {redis.call('ZCARD', key('st:queued')), redis.call('ZCARD', key('st:running')), o[2] or ''}
end
return redis.error_reply('unknown read operation ' .. tostring(op))
