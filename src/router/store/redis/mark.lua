-- mark: a denial or a model cool-down every instance sees. KEYS = the key;
-- ARGV = now|'server', duration, first field name ('reason' / 'cause'), its value, message.
local now = clock(ARGV[1])
local dur = num(ARGV[2])
local until_ = now + dur
local old = num(redis.call('HGET', KEYS[1], 'until'))
if old > until_ and redis.call('PTTL', KEYS[1]) > 0 then until_ = old end
redis.call('HSET', KEYS[1], ARGV[3], ARGV[4], 'message', ARGV[5], 'until', string.format('%d', until_))
redis.call('PEXPIRE', KEYS[1], math.floor((until_ - now) / 1000) + 1000)
return until_
