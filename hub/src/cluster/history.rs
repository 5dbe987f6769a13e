//! Group history: which groups keep one ([`HistoryPolicy`], from each hub's settings), a page
//! of it as the REST API and joining clients read it ([`HistoryPage`]), and the store of a
//! single node ([`MemoryHistory`]). A cluster keeps the same history in the capped Redis
//! stream of each group that reliable sessions resume from (`redis/`), so there is one store
//! per engine and one offset per message: `<ms>-<seq>`, the stream id.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use dashmap::DashMap;
use nerve_protocol::Offset;
use parking_lot::Mutex;

use super::Scope;
use crate::config::history::HistorySettings;
use crate::metrics;
use crate::registry::{Delivery, FanOut};

/// Which groups of which hubs keep a history.
#[derive(Debug, Clone, Default)]
pub struct HistoryPolicy {
    hubs: HashMap<String, HistorySettings>,
}

impl HistoryPolicy {
    /// The policy of hubs (lowercase names) and their history settings.
    pub fn new(hubs: impl IntoIterator<Item = (String, HistorySettings)>) -> Self {
        HistoryPolicy {
            hubs: hubs.into_iter().collect(),
        }
    }

    /// The settings of a group's history, if it keeps one.
    pub fn for_group(&self, hub: &str, group: &str) -> Option<&HistorySettings> {
        self.hubs.get(hub).filter(|s| s.covers(group))
    }
}

/// One kept message.
#[derive(Clone)]
pub struct HistoryEntry {
    /// Its offset (the milliseconds part is when it was kept).
    pub offset: Offset,
    /// The message, its frame carrying the offset.
    pub delivery: Arc<Delivery>,
    /// Who it was sent to (excluded connections, a filter).
    pub scope: Scope,
}

/// A part of a group's history.
#[derive(Clone, Default)]
pub struct HistoryPage {
    /// Entries, oldest first.
    pub entries: Vec<HistoryEntry>,
    /// The oldest offset still kept, if any.
    pub first: Option<Offset>,
    /// The newest offset trimmed away, if any: a reader after an older offset missed some.
    pub trimmed: Option<Offset>,
    /// Whether more entries follow the last one returned.
    pub more: bool,
}

impl HistoryPage {
    /// Whether a reader that saw everything up to `after` missed messages trimmed since.
    pub fn missed_after(&self, after: Offset) -> bool {
        self.trimmed.is_some_and(|t| t > after)
    }
}

/// The newest `top` entries, or `top` entries after `after`, of entries ordered by offset.
fn select<'a, I>(entries: I, after: Option<Offset>, top: usize) -> (Vec<HistoryEntry>, bool)
where
    I: DoubleEndedIterator<Item = &'a HistoryEntry>,
{
    match after {
        Some(after) => {
            let mut later = entries.filter(|e| e.offset > after);
            let page: Vec<HistoryEntry> = later.by_ref().take(top).cloned().collect();
            let more = later.next().is_some();
            (page, more)
        }
        // The newest: nothing follows them.
        None => {
            let mut page: Vec<HistoryEntry> = entries.rev().take(top).cloned().collect();
            page.reverse();
            (page, false)
        }
    }
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

/// One group's kept messages on a single node.
#[derive(Default)]
struct GroupLog {
    entries: VecDeque<HistoryEntry>,
    /// The last offset given (offsets never repeat, even after the entries are trimmed).
    last: Offset,
    /// The newest offset trimmed away.
    trimmed: Option<Offset>,
}

impl GroupLog {
    /// Drops entries past the count cap and older than the age cap.
    fn trim(&mut self, s: &HistorySettings, now: u64) {
        let oldest = now.saturating_sub(s.max_age_secs.saturating_mul(1000));
        let (mut by_count, mut by_age) = (0, 0);
        while self.entries.len() > s.max_messages {
            if let Some(e) = self.entries.pop_front() {
                self.trimmed = Some(e.offset);
                by_count += 1;
            }
        }
        while self.entries.front().is_some_and(|e| e.offset.ms < oldest) {
            if let Some(e) = self.entries.pop_front() {
                self.trimmed = Some(e.offset);
                by_age += 1;
            }
        }
        metrics::global().history_trim("max_messages", by_count);
        metrics::global().history_trim("max_age", by_age);
    }

    fn next_offset(&mut self, now: u64) -> Offset {
        self.last = if now > self.last.ms {
            Offset::new(now, 0)
        } else {
            self.last.next()
        };
        self.last
    }
}

type Log = Arc<Mutex<GroupLog>>;

/// The group histories of a single node, bounded per group (messages, age) and per hub
/// (groups).
#[derive(Default)]
pub struct MemoryHistory {
    policy: HistoryPolicy,
    logs: DashMap<(Arc<str>, Arc<str>), Log>,
    /// Groups with a log, per hub.
    groups: DashMap<Arc<str>, usize>,
}

impl MemoryHistory {
    /// An empty store keeping what `policy` asks for.
    pub fn new(policy: HistoryPolicy) -> Self {
        MemoryHistory {
            policy,
            ..MemoryHistory::default()
        }
    }

    fn log(&self, hub: &str, group: &str, create: bool) -> Option<Log> {
        let key = (Arc::<str>::from(hub), Arc::<str>::from(group));
        if let Some(l) = self.logs.get(&key) {
            return Some(l.clone());
        }
        if !create {
            return None;
        }
        let settings = self.policy.for_group(hub, group)?;
        let mut count = self.groups.entry(key.0.clone()).or_default();
        if *count >= settings.max_groups {
            drop(count);
            self.sweep(hub, settings);
            count = self.groups.entry(key.0.clone()).or_default();
            if *count >= settings.max_groups {
                metrics::global().history_trim("max_groups", 1);
                return None;
            }
        }
        let log = self.logs.entry(key).or_insert_with(|| {
            *count += 1;
            Log::default()
        });
        Some(log.clone())
    }

    /// Forgets a hub's groups whose messages all aged out.
    fn sweep(&self, hub: &str, settings: &HistorySettings) {
        let now = now_ms();
        let mut removed = 0;
        self.logs.retain(|(h, _), log| {
            if &**h != hub {
                return true;
            }
            let mut l = log.lock();
            l.trim(settings, now);
            let keep = !l.entries.is_empty();
            removed += usize::from(!keep);
            keep
        });
        if let Some(mut c) = self.groups.get_mut(hub) {
            *c = c.saturating_sub(removed);
        }
    }

    /// Keeps a group message, when its group keeps a history: gives it the next offset and
    /// fans out the message carrying it, under the group's lock (so a joining reader sees
    /// each message either in the history or live). `None` when the group keeps none.
    pub fn append(
        &self,
        hub: &str,
        group: &str,
        d: &Arc<Delivery>,
        scope: &Scope,
        fan_out: impl FnOnce(&Arc<Delivery>) -> FanOut,
    ) -> Option<FanOut> {
        let settings = self.policy.for_group(hub, group)?;
        let log = self.log(hub, group, true)?;
        let mut l = log.lock();
        let now = now_ms();
        let offset = l.next_offset(now);
        let stamped = d.at_offset(Arc::from(group), offset);
        l.entries.push_back(HistoryEntry {
            offset,
            delivery: stamped.clone(),
            scope: scope.clone(),
        });
        l.trim(settings, now);
        Some(fan_out(&stamped))
    }

    /// The entries after `after` (at most `top`), or the newest `top`.
    pub fn page(&self, hub: &str, group: &str, after: Option<Offset>, top: usize) -> HistoryPage {
        let Some(settings) = self.policy.for_group(hub, group) else {
            return HistoryPage::default();
        };
        let Some(log) = self.log(hub, group, false) else {
            return HistoryPage::default();
        };
        let mut l = log.lock();
        l.trim(settings, now_ms());
        let (entries, more) = select(l.entries.iter(), after, top);
        HistoryPage {
            entries,
            first: l.entries.front().map(|e| e.offset),
            trimmed: l.trimmed,
            more,
        }
    }
}

#[cfg(test)]
mod tests {
    use nerve_protocol::{Payload, Sender};

    use super::*;

    fn store(max_messages: usize, max_groups: usize) -> MemoryHistory {
        let settings = HistorySettings {
            max_messages,
            max_groups,
            groups: vec!["kept.*".into()],
            ..HistorySettings::default()
        };
        MemoryHistory::new(HistoryPolicy::new([("chat".to_string(), settings)]))
    }

    fn keep(h: &MemoryHistory, group: &str, text: &str) -> Option<Arc<Delivery>> {
        let d = Delivery::new(Sender::group(group, None), Payload::text(text));
        let mut out = None;
        h.append("chat", group, &d, &Scope::default(), |d| {
            out = Some(d.clone());
            FanOut::default()
        })?;
        out
    }

    #[test]
    fn offsets_increase_pages_read_forward_and_caps_trim() {
        let h = store(3, 10);
        assert!(
            keep(&h, "other", "x").is_none(),
            "a group the policy leaves out"
        );
        let sent: Vec<_> = (0..5)
            .map(|i| keep(&h, "kept.a", &format!("m{i}")).expect("kept"))
            .collect();
        let offsets: Vec<Offset> = sent
            .iter()
            .map(|d| d.position.as_ref().expect("position").id.into())
            .collect();
        assert!(offsets.windows(2).all(|w| w[0] < w[1]));
        assert!(sent[0].json_frame.contains("\"offset\":"));

        let newest = h.page("chat", "kept.a", None, 2);
        let got: Vec<Offset> = newest.entries.iter().map(|e| e.offset).collect();
        assert_eq!(got, offsets[3..]);
        assert_eq!(newest.first, Some(offsets[2]));
        assert!(newest.missed_after(offsets[0]) && !newest.missed_after(offsets[1]));

        let after = h.page("chat", "kept.a", Some(offsets[2]), 1);
        assert_eq!(after.entries[0].offset, offsets[3]);
        assert!(after.more);
        let last = h.page("chat", "kept.a", Some(offsets[3]), 5);
        assert!(!last.more && last.entries.len() == 1);
    }

    #[test]
    fn groups_past_the_cap_keep_nothing() {
        let h = store(3, 1);
        assert!(keep(&h, "kept.a", "a").is_some());
        assert!(keep(&h, "kept.b", "b").is_none());
        assert!(h.page("chat", "kept.b", None, 5).entries.is_empty());
    }
}
