//! Reading a group's history for clients: a page of its capped stream (after an offset, or
//! the newest entries), with the oldest offset kept and the newest trimmed away (which the
//! publishing script records beside the stream).

use std::sync::Arc;
use std::time::Duration;

use nerve_protocol::Offset;
use redis::streams::StreamRangeReply;

use super::jobs::Job;
use super::receive::{delivery_of, history_entry, id_string, parse_id};
use super::{RedisBroker, keys};
use crate::cluster::{HistoryEntry, HistoryPage};

/// Longest a history read waits for Redis (a REST call or a joining client waits on it).
const READ_TIMEOUT: Duration = Duration::from_secs(2);

/// Up to `top` entries after `after`, or the newest `top`. `None` when Redis cannot answer.
pub(super) async fn page(
    broker: &RedisBroker,
    hub: &str,
    group: &str,
    after: Option<Offset>,
    top: usize,
) -> Option<HistoryPage> {
    if broker.settings.history.for_group(hub, group).is_none() {
        return Some(HistoryPage::default());
    }
    // What this node queued before the read is in the stream when it is read.
    let (done, passed_on) = tokio::sync::oneshot::channel();
    if broker.queue(Job::Barrier(done)) {
        let _ = tokio::time::timeout(READ_TIMEOUT, passed_on).await;
    }
    let mut c = broker.conn()?;
    let key = keys::history(hub, group);
    let count = top.saturating_add(1);
    let mut p = redis::pipe();
    match after {
        Some(a) => p
            .cmd("XRANGE")
            .arg(&key)
            .arg(format!("({}", id_string(a.into())))
            .arg("+")
            .arg("COUNT")
            .arg(count),
        None => p
            .cmd("XREVRANGE")
            .arg(&key)
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(top),
    };
    p.cmd("XRANGE")
        .arg(&key)
        .arg("-")
        .arg("+")
        .arg("COUNT")
        .arg(1);
    p.cmd("GET").arg(keys::history_trimmed(hub, group));
    let read = p.query_async::<(StreamRangeReply, StreamRangeReply, Option<String>)>(&mut c);
    let (mut entries, first, trimmed) = broker.guarded(READ_TIMEOUT, read).await?;
    if after.is_none() {
        entries.ids.reverse();
    }
    let trimmed = trimmed
        .and_then(|t| parse_id(t.as_bytes()))
        .map(Offset::from);
    let more = entries.ids.len() > top;
    let entries = entries
        .ids
        .iter()
        .take(top)
        .filter_map(|e| history_entry(e, group))
        .map(|(id, m)| {
            let (_, scope, delivery) = delivery_of(m, Some(id), true);
            HistoryEntry {
                offset: id.into(),
                delivery: Arc::clone(&delivery),
                scope,
            }
        })
        .collect();
    Some(HistoryPage {
        entries,
        first: first
            .ids
            .first()
            .and_then(|e| parse_id(e.id.as_bytes()))
            .map(Offset::from),
        trimmed,
        more,
    })
}
