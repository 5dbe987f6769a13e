//! The Lua scripts behind every multi-step Redis operation. Each script touches only keys of one
//! partition (or one task/context), which share a hash tag, so each runs atomically in one slot
//! on Redis Cluster.

use std::sync::LazyLock;

use redis::Script;

/// KEYS: stream, delayed zset, delayed payload hash, dedupe key.
/// ARGV: envelope json, envelope id, deliver-at ms ('' = now), dedupe window ms, now ms.
pub static ENQUEUE: LazyLock<Script> = LazyLock::new(|| Script::new(ENQUEUE_LUA));

/// The body of `ENQUEUE`, for pipelines that send it with `EVAL` (cached by Redis like
/// `EVALSHA`, but never refused as unknown after a restart).
pub const ENQUEUE_LUA: &str = r#"
if not redis.call('SET', KEYS[4], '1', 'NX', 'PX', ARGV[4]) then
  return 'duplicate'
end
if ARGV[3] ~= '' and tonumber(ARGV[3]) > tonumber(ARGV[5]) then
  redis.call('ZADD', KEYS[2], ARGV[3], ARGV[2])
  redis.call('HSET', KEYS[3], ARGV[2], ARGV[1])
  return 'scheduled'
end
redis.call('XADD', KEYS[1], '*', 'env', ARGV[1])
return 'enqueued'
"#;

/// KEYS: delayed zset, delayed payload hash. ARGV: envelope id.
pub static CANCEL_SCHEDULED: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local n = redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
return n
"#,
    )
});

/// KEYS: stream. ARGV: group, min idle ms, max, consumer.
/// Returns {{entry id, envelope json, delivery count}, ...}; entries deleted meanwhile are
/// dropped from the pending list by XCLAIM itself (Redis 7).
pub static CLAIM_STALE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local pending = redis.call('XPENDING', KEYS[1], ARGV[1], 'IDLE', ARGV[2], '-', '+', ARGV[3])
local out = {}
for _, p in ipairs(pending) do
  local claimed = redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[4], ARGV[2], p[1])
  local e = claimed[1]
  if e and e[2] then
    local env = nil
    for i = 1, #e[2], 2 do
      if e[2][i] == 'env' then env = e[2][i + 1] end
    end
    if env then table.insert(out, {e[1], env, p[4] + 1}) end
  end
end
return out
"#,
    )
});

/// KEYS: stream, delayed zset, delayed payload hash.
/// ARGV: group, entry id, envelope json (attempt already bumped), envelope id, due ms.
pub static RETRY: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
redis.call('XDEL', KEYS[1], ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[5], ARGV[4])
redis.call('HSET', KEYS[3], ARGV[4], ARGV[3])
return 1
"#,
    )
});

/// KEYS: stream, dead-letter stream.
/// ARGV: group, entry id, envelope json, reason, description, deliveries, now ms.
pub static DEAD_LETTER: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
redis.call('XDEL', KEYS[1], ARGV[2])
redis.call('XADD', KEYS[2], '*', 'env', ARGV[3], 'reason', ARGV[4], 'description', ARGV[5],
  'deliveries', ARGV[6], 'at', ARGV[7])
return 1
"#,
    )
});

/// KEYS: stream, delayed zset, delayed payload hash. ARGV: now ms, max.
pub static PROMOTE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local ids = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, id in ipairs(ids) do
  local env = redis.call('HGET', KEYS[3], id)
  if env then redis.call('XADD', KEYS[1], '*', 'env', env) end
  redis.call('ZREM', KEYS[2], id)
  redis.call('HDEL', KEYS[3], id)
end
return #ids
"#,
    )
});

/// KEYS: stream, dead-letter stream. ARGV: dead-letter entry id, envelope json to re-enqueue.
pub static REDRIVE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('XDEL', KEYS[2], ARGV[1]) == 0 then return 0 end
redis.call('XADD', KEYS[1], '*', 'env', ARGV[2])
return 1
"#,
    )
});

/// KEYS: owner key. ARGV: consumer, lease ms. Takes a free partition or renews our own.
pub static ACQUIRE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local cur = redis.call('GET', KEYS[1])
if not cur then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
if cur == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"#,
    )
});

/// KEYS: owner key. ARGV: consumer.
pub static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"#,
    )
});

/// KEYS: live consumer zset. ARGV: consumer, now ms, ttl ms. Returns the live count.
pub static HEARTBEAT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
redis.call('ZADD', KEYS[1], tonumber(ARGV[2]) + tonumber(ARGV[3]), ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]) * 10)
return redis.call('ZCARD', KEYS[1])
"#,
    )
});

/// KEYS: task hash. ARGV: expected version, new version, record json, retention ms.
pub static TASK_CAS: LazyLock<Script> = LazyLock::new(|| Script::new(TASK_CAS_LUA));

/// The body of `TASK_CAS`, for pipelines.
pub const TASK_CAS_LUA: &str = r#"
local v = tonumber(redis.call('HGET', KEYS[1], 'v') or '0')
if v ~= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'v', ARGV[2], 'rec', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1
"#;

/// KEYS: context hash. ARGV: value json, now ms, retention ms. Returns the new version.
pub static CONTEXT_PUBLISH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local v = redis.call('HINCRBY', KEYS[1], 'v', 1)
redis.call('HSET', KEYS[1], 'value', ARGV[1], 'at', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return v
"#,
    )
});

/// KEYS: a task's push-config hash. ARGV: config id, document, max configs, retention ms.
/// Returns 1 when stored, 0 when the task holds `max` other configs.
pub static PUSH_CONFIG_PUT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0
   and redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[3]) then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1
"#,
    )
});
