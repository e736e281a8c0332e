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
