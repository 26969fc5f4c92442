//! The Lua scripts of the Redis backend: every decision that reads and
//! writes is one of them, atomic in Redis, and the gates read Redis's own
//! `TIME`, so the replicas' clocks do not matter. Each is built once, with
//! its hash, so a call sends `EVALSHA` (the connection loads the script
//! again after a Redis restart).

use std::sync::LazyLock;

use redis::Script;

/// Appends unless full (or, with a once key KEYS[3], unless it is set, and
/// then sets it for ARGV[3] ms); items are `seq:data`, `seq` from a
/// counter. Answers {1, len} queued, {0, len} full, {2, 0} already.
pub(super) static PUSH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if KEYS[3] and redis.call('EXISTS', KEYS[3]) == 1 then return {2, 0} end
local len = redis.call('LLEN', KEYS[1])
if len >= tonumber(ARGV[1]) then return {0, len} end
local seq = redis.call('INCR', KEYS[2])
redis.call('RPUSH', KEYS[1], seq .. ':' .. ARGV[2])
if KEYS[3] then redis.call('SET', KEYS[3], '1', 'PX', ARGV[3]) end
return {1, len + 1}
",
    )
});

/// Pops head items while their `seq` is at most ARGV[1]; an item that is
/// not `seq:data` (`peek` skips it too) goes with them.
pub(super) static POP_THROUGH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local popped = 0
while true do
  local head = redis.call('LINDEX', KEYS[1], 0)
  if not head then break end
  local seq = tonumber(string.match(head, '^(%d+):'))
  if seq and seq > tonumber(ARGV[1]) then break end
  redis.call('LPOP', KEYS[1])
  popped = popped + 1
end
return popped
",
    )
});

/// The gate rule of `gate.rs`, in Redis: KEYS = log, hold, counter;
/// ARGV = the longest window's ms, then a limit and a window's ms for each
/// window. Answers {1, used in the first window} open, {2, ms} held,
/// {3, ms} wait.
pub(super) static PASS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local longest = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - longest)
local held = redis.call('PTTL', KEYS[2])
if held > 0 then return {2, held} end
local wait = 0
local first_used = 0
for i = 2, #ARGV, 2 do
  local limit = tonumber(ARGV[i])
  local window = tonumber(ARGV[i + 1])
  local since = '(' .. (now - window)
  local used = redis.call('ZCOUNT', KEYS[1], since, '+inf')
  if i == 2 then first_used = used end
  local frees = 0
  if limit < 1 then
    frees = window
  elseif used >= limit then
    local nth = redis.call('ZRANGEBYSCORE', KEYS[1], since, '+inf', 'WITHSCORES', 'LIMIT', used - limit, 1)
    frees = tonumber(nth[2]) + window - now
    if frees < 1 then frees = 1 end
  end
  if frees > wait then wait = frees end
end
if wait > 0 then return {3, wait} end
local n = redis.call('INCR', KEYS[3])
redis.call('ZADD', KEYS[1], now, now .. ':' .. n)
redis.call('PEXPIRE', KEYS[1], longest)
redis.call('PEXPIRE', KEYS[3], longest)
return {1, first_used + 1}
",
    )
});

/// Takes back the latest send of the log KEYS[1].
pub(super) static REFUND: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
redis.call('ZPOPMAX', KEYS[1])
return 1
",
    )
});

/// Holds for ARGV[1] ms unless held longer already.
pub(super) static HOLD: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], '1', 'PX', ARGV[1])
end
return 1
",
    )
});

/// KEYS = log, hold; ARGV = window ms. Answers {used, ms until the oldest
/// leaves or -1, ms held or -1}.
pub(super) static STATE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local used = redis.call('ZCARD', KEYS[1])
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local next_free = -1
if first[2] then next_free = tonumber(first[2]) + window - now end
return {used, next_free, redis.call('PTTL', KEYS[2])}
",
    )
});

/// Takes or renews a lease: KEYS[1]; ARGV = holder, ttl ms.
pub(super) static LEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local current = redis.call('GET', KEYS[1])
if (not current) or current == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
",
    )
});
