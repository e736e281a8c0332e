"""Every Lua script swarmbot runs in Redis: each is one atomic check-and-set that two
processes racing for the same thing must not interleave."""

from __future__ import annotations

# Keys a script writes may have been overwritten with another type by anyone who can write
# to Redis. A script that then failed would leave a job unanswered, or a worker retrying
# forever: a key of the wrong type is dropped first (it holds nothing of ours).
_FRESH = """
local function fresh(key, want)
  local kind = redis.call('TYPE', key)['ok']
  if kind ~= want and kind ~= 'none' then redis.call('DEL', key) end
end
"""
# A worker's heartbeat: its time among the workers, its load, and stale workers dropped.
BEAT = (
    _FRESH
    + """
fresh(KEYS[1], 'zset')
fresh(KEYS[2], 'hash')
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', tonumber(ARGV[1]) - 3600)
return 1
"""
)
# A stream with its consumer group, made if missing; a key of another type there (someone
# wrote it) is renamed aside first and its new name returned. In one step: checked and
# renamed apart, a stream the other process had just made in its place (holding a job's
# answer) was renamed aside instead, and the answer lost.
ENSURE_STREAM = """
local kind = redis.call('TYPE', KEYS[1])['ok']
local aside = ''
if kind ~= 'stream' and kind ~= 'none' then
  aside = KEYS[1] .. ':set-aside:' .. ARGV[2]
  redis.call('RENAME', KEYS[1], aside)
end
redis.pcall('XGROUP', 'CREATE', KEYS[1], ARGV[1], '0', 'MKSTREAM')
return aside
"""
# A queue entry refused: kept (capped) in the rejected stream with why, and acknowledged.
REJECT = (
    _FRESH
    + """
fresh(KEYS[1], 'stream')
redis.call('XADD', KEYS[1], 'MAXLEN', '~', 1000, '*', 'entry', ARGV[1], 'reason', ARGV[2],
           'sample', ARGV[3], 'at', ARGV[4])
redis.call('XACK', KEYS[2], ARGV[5], ARGV[1])
return 1
"""
)
# Cancel only what has not started: check and set in one step, so a worker picking the job
# up at the same moment either sees the cancellation or the canceller sees "running".
CANCEL = (
    _FRESH
    + """
fresh(KEYS[1], 'hash')
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return 'unknown' end
if state == 'queued' or state == 'waiting' or state == 'scheduled' then
  redis.call('HSET', KEYS[1], 'state', 'cancelled', 'cancelled_by', ARGV[1], 'finished', ARGV[2],
             'summary', 'cancelled by ' .. ARGV[1])
  return 'now-cancelled'
end
return state
"""
)
# Compare-and-delete: a lease (a stack lock, the notice watcher's lead) is given up only
# by its holder, never by a process whose lease already expired and passed to another.
RELEASE = (
    _FRESH
    + """
fresh(KEYS[1], 'string')
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
)
ACQUIRE = (
    _FRESH
    + """
fresh(KEYS[1], 'string')
local holder = redis.call('GET', KEYS[1])
if not holder or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return ''
end
return holder
"""
)
START = (
    _FRESH
    + """
fresh(KEYS[1], 'hash')
local state = redis.call('HGET', KEYS[1], 'state')
if state == 'cancelled' then return 'cancelled' end
redis.call('HSET', KEYS[1], 'state', ARGV[1], 'started', ARGV[2], 'worker', ARGV[3])
return state or ''
"""
)
# A worker taking a job, in one round trip: the replay guard (the job's first queue entry
# wins; the same entry again is a redelivery and passes), then cancelled-or-start.
TAKE = (
    _FRESH
    + """
fresh(KEYS[1], 'string')
fresh(KEYS[2], 'hash')
local seen = redis.call('GET', KEYS[1])
if seen and seen ~= ARGV[1] then return 'replay' end
if not seen then redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2]) end
if redis.call('HGET', KEYS[2], 'state') == 'cancelled' then return 'cancelled' end
redis.call('HSET', KEYS[2], 'state', 'running', 'started', ARGV[3], 'worker', ARGV[4])
return 'started'
"""
)
# The job counter, taken in a script: a counter someone overwrote with something that is
# not an integer is renamed aside and starts again above the current time in milliseconds
# (Redis's clock; never below an ID already used, whose replay guard would refuse the new
# job), instead of failing every command that queues a job.
_NEXT_ID = """
local function next_id(key)
  local n = redis.pcall('INCR', key)
  if type(n) == 'table' and n.err then
    local now = redis.call('TIME')
    redis.call('RENAME', key, key .. ':set-aside')
    redis.call('SET', key, now[1] .. string.format('%03d', math.floor(now[2] / 1000)))
    n = redis.call('INCR', key)
  end
  return n
end
"""
NEXT_ID = _NEXT_ID + "return tostring(next_id(KEYS[1]))\n"
# A sliding one-minute window (a sorted set of times) trimmed to the last minute; one of
# the wrong type (written by someone else) is dropped and started anew.
_WINDOW = """
local function trim_window(key, now)
  local trimmed = redis.pcall('ZREMRANGEBYSCORE', key, '-inf', tonumber(now) - 60)
  if type(trimmed) == 'table' and trimmed.err then redis.call('DEL', key) end
end
"""
# A user's sliding one-minute window of commands, checked and counted in one step, and for
# a command that is going to be queued its job ID taken in the same round trip. Refused
# commands do not count; the reply carries the oldest entry's time (when to try again).
RATE = (
    _NEXT_ID
    + _WINDOW
    + """
trim_window(KEYS[1], ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return {0, oldest[2]}
end
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
redis.call('EXPIRE', KEYS[1], 61)
if ARGV[4] == '1' then return {1, tostring(next_id(KEYS[2]))} end
return {1, ''}
"""
)
# A user's sliding one-minute window of refused and invalid commands: counted up to one past
# the limit (the one told "slow down"); returns this command's place in the window, so
# the caller knows whether it is within the limit, the first over it, or one more after.
REFUSALS = (
    _WINDOW
    + """
trim_window(KEYS[1], ARGV[1])
local n = redis.call('ZCARD', KEYS[1])
if n <= tonumber(ARGV[3]) then
  redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
  redis.call('EXPIRE', KEYS[1], 61)
end
return n + 1
"""
)
# A job's end in one command: its answer posted to the inbox (which expires if nobody reads
# it), its record updated, its audit entry added, its queue entry acknowledged. Atomic as
# a MULTI would be, but one command to send and one reply to read instead of seven: for a
# no-op job the client's own work per command was most of the cost.
FINISH = (
    _FRESH
    + """
fresh(KEYS[1], 'stream')
fresh(KEYS[2], 'stream')
fresh(KEYS[3], 'hash')
if redis.call('HEXISTS', KEYS[3], 'answered') == 1 then
  -- answered already (this is the answer given again, its replication unconfirmed)
  redis.call('XACK', KEYS[4], ARGV[2], ARGV[1])
  return 0
end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', 'result', ARGV[9], 'sig', ARGV[10])
redis.call('EXPIRE', KEYS[2], ARGV[4])
redis.call('HSET', KEYS[3], 'state', ARGV[6], 'finished', ARGV[7], 'summary', ARGV[8],
  'answered', ARGV[7])
local pairs = tonumber(ARGV[11])
if pairs > 0 then
  local args = {'XADD', KEYS[1], 'MAXLEN', '~', ARGV[5], '*'}
  for i = 12, 11 + 2 * pairs do args[#args + 1] = ARGV[i] end
  redis.call(unpack(args))
end
redis.call('XACK', KEYS[4], ARGV[2], ARGV[1])
return 1
"""
)

# Scheduled jobs that are due, onto the queue: each once, whichever worker runs this (it is
# one script: two workers cannot both move a job). A job cancelled meanwhile is dropped.
# KEYS: the schedule, the queue. ARGV: now, the entry key prefix, the record key prefix.
MOVE_DUE = (
    _FRESH
    + """
fresh(KEYS[1], 'zset')
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, 50)
local moved = 0
for _, id in ipairs(due) do
  if redis.call('ZREM', KEYS[1], id) == 1 then
    local entry = ARGV[2] .. id
    local fields = {}
    if redis.call('TYPE', entry)['ok'] == 'hash' then
      fields = redis.call('HGETALL', entry)
    end
    redis.call('DEL', entry)
    local record = ARGV[3] .. id
    local state = false
    if redis.call('TYPE', record)['ok'] == 'hash' then
      state = redis.call('HGET', record, 'state')
    end
    if #fields > 0 and state ~= 'cancelled' then
      if state then redis.call('HSET', record, 'state', 'queued') end
      redis.call('XADD', KEYS[2], '*', unpack(fields))
      moved = moved + 1
    end
  end
end
return moved
"""
)
