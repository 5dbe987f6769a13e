//! Queue levels of one partition in one script call (its keys share the partition's hash
//! tag): the stream holds never-delivered and pending entries (acknowledged ones are deleted),
//! the delayed set holds scheduled and backing-off messages, the dead-letter stream the rest.

use std::sync::LazyLock;

use redis::Script;

use super::{GROUP, RedisTransport, map_err, part_key};
use crate::transport::{Partition, QueueLevels, TransportResult};

static LEVELS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local len = redis.call('XLEN', KEYS[1])
local pending = 0
local ok, summary = pcall(redis.call, 'XPENDING', KEYS[1], ARGV[1])
if ok and type(summary) == 'table' then pending = tonumber(summary[1]) or 0 end
local delayed = redis.call('ZCARD', KEYS[2])
return {len - pending + delayed, pending, redis.call('XLEN', KEYS[3]), delayed}
"#,
    )
});

impl RedisTransport {
    pub(super) async fn q_levels(&self, p: &Partition) -> TransportResult<QueueLevels> {
        let (waiting, in_flight, dead, delayed): (i64, i64, i64, i64) = LEVELS
            .key(part_key(p, "s"))
            .key(part_key(p, "d"))
            .key(part_key(p, "dlq"))
            .arg(GROUP)
            .invoke_async(&mut self.conn())
            .await
            .map_err(map_err)?;
        let count = |n: i64| u64::try_from(n).unwrap_or(0);
        Ok(QueueLevels {
            waiting: count(waiting),
            in_flight: count(in_flight),
            dead: count(dead),
            delayed: count(delayed),
        })
    }
}
