-- lanes: the lanes with due queued jobs. ARGV: now.
-- Answer: flat {lane, due count, ord of its next job, ...}.
local now = num(ARGV[1])
tidy(now)
local out = {}
for _, lane in ipairs(redis.call('SMEMBERS', key('lanes'))) do
  local R = key('ready:' .. lane)
  local n = redis.call('ZCARD', R)
  if n > 0 then
    out[#out + 1] = lane
    out[#out + 1] = n
    out[#out + 1] = redis.call('ZRANGEBYLEX', R, '-', '+', 'LIMIT', 0, 1)[1]
  else
    redis.call('SREM', key('lanes'), lane)
  end
end
return out
