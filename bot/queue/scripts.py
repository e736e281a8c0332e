"""Every Lua script swarmbot runs in Redis: each is one atomic check-and-set that two
processes racing for the same thing must not interleave."""

from __future__ import annotations

# Cancel only what has not started: check and set in one step, so a worker picking the job
# up at the same moment either sees the cancellation or the canceller sees "running".
CANCEL = """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return 'unknown' end
if state == 'queued' or state == 'waiting' then
  redis.call('HSET', KEYS[1], 'state', 'cancelled', 'cancelled_by', ARGV[1], 'finished', ARGV[2],
             'summary', 'cancelled by ' .. ARGV[1])
  return 'now-cancelled'
end
return state
"""
# Compare-and-delete: a lease (a stack lock, the notice watcher's lead) is given up only
# by its holder, never by a process whose lease already expired and passed to another.
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
ACQUIRE = """
local holder = redis.call('GET', KEYS[1])
if not holder or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return ''
end
return holder
"""
START = """
local state = redis.call('HGET', KEYS[1], 'state')
if state == 'cancelled' then return 'cancelled' end
redis.call('HSET', KEYS[1], 'state', ARGV[1], 'started', ARGV[2], 'worker', ARGV[3])
return state or ''
"""
# A worker taking a job, in one round trip: the replay guard (the job's first queue entry
# wins; the same entry again is a redelivery and passes), then cancelled-or-start.
TAKE = """
local seen = redis.call('GET', KEYS[1])
if seen and seen ~= ARGV[1] then return 'replay' end
if not seen then redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2]) end
if redis.call('HGET', KEYS[2], 'state') == 'cancelled' then return 'cancelled' end
redis.call('HSET', KEYS[2], 'state', 'running', 'started', ARGV[3], 'worker', ARGV[4])
return 'started'
"""
# A user's sliding one-minute window of commands, checked and counted in one step, and for
# a command that is going to be queued its job ID taken in the same round trip. Refused
# commands do not count; the reply carries the oldest entry's time (when to try again).
RATE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', tonumber(ARGV[1]) - 60)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return {0, oldest[2]}
end
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
redis.call('EXPIRE', KEYS[1], 61)
if ARGV[4] == '1' then return {1, tostring(redis.call('INCR', KEYS[2]))} end
return {1, ''}
"""
# A job's end in one command: its answer posted to the inbox (which expires if nobody reads
# it), its record updated, its audit entry added, its queue entry acknowledged. Atomic as
# a MULTI would be, but one command to send and one reply to read instead of seven: for a
# no-op job the client's own work per command was most of the cost.
FINISH = """
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', 'result', ARGV[9], 'sig', ARGV[10])
redis.call('EXPIRE', KEYS[2], ARGV[4])
redis.call('HSET', KEYS[3], 'state', ARGV[6], 'finished', ARGV[7], 'summary', ARGV[8])
local pairs = tonumber(ARGV[11])
if pairs > 0 then
  local args = {'XADD', KEYS[1], 'MAXLEN', '~', ARGV[5], '*'}
  for i = 12, 11 + 2 * pairs do args[#args + 1] = ARGV[i] end
  redis.call(unpack(args))
end
redis.call('XACK', KEYS[4], ARGV[2], ARGV[1])
return 1
"""
