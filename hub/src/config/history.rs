//! Group history settings (`[hubs.<hub>] history = { … }`): how many messages, and for how
//! long, a hub keeps per group so clients can read them again and come back by offset.

use serde::{Deserialize, Serialize};

/// Most messages a group's history may keep.
pub const MAX_MESSAGES: usize = 100_000;

/// Most groups a hub keeps a history for in memory (a single node).
pub const MAX_GROUPS: usize = 1_000_000;

/// A hub's group history. Off unless configured.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct HistorySettings {
    /// Messages kept per group, newest first (default 1000, at most 100000).
    pub max_messages: usize,
    /// Seconds a message is kept (default 3600).
    pub max_age_secs: u64,
    /// Groups with a history, by name or by prefix ending in `*` (default: every group).
    pub groups: Vec<String>,
    /// Groups kept in memory per hub on a single node; past it, new groups keep no history
    /// (default 10000).
    pub max_groups: usize,
}

impl Default for HistorySettings {
    fn default() -> Self {
        HistorySettings {
            max_messages: 1000,
            max_age_secs: 3600,
            groups: Vec::new(),
            max_groups: 10_000,
        }
    }
}

impl HistorySettings {
    /// Whether a group keeps a history.
    pub fn covers(&self, group: &str) -> bool {
        self.groups.is_empty()
            || self.groups.iter().any(|p| match p.strip_suffix('*') {
                Some(prefix) => group.starts_with(prefix),
                None => p == group,
            })
    }

    /// Checks ranges.
    pub fn validate(&self, hub: &str) -> Result<(), String> {
        if !(1..=MAX_MESSAGES).contains(&self.max_messages) {
            return Err(format!(
                "hubs.{hub}.history.max_messages must be between 1 and {MAX_MESSAGES}"
            ));
        }
        if self.max_age_secs == 0 {
            return Err(format!(
                "hubs.{hub}.history.max_age_secs must be at least 1"
            ));
        }
        if !(1..=MAX_GROUPS).contains(&self.max_groups) {
            return Err(format!(
                "hubs.{hub}.history.max_groups must be between 1 and {MAX_GROUPS}"
            ));
        }
        if self.groups.iter().any(|p| p.is_empty() || p.len() > 1024) {
            return Err(format!(
                "hubs.{hub}.history.groups entries must be 1 to 1024 characters"
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_choose_groups() {
        let all = HistorySettings::default();
        assert!(all.covers("anything"));
        let some = HistorySettings {
            groups: vec!["chat.*".into(), "news".into()],
            ..HistorySettings::default()
        };
        assert!(some.covers("chat.room1") && some.covers("news"));
        assert!(!some.covers("newsroom") && !some.covers("cha"));
        assert!(some.validate("h").is_ok());
        let bad = HistorySettings {
            max_messages: 0,
            ..HistorySettings::default()
        };
        assert!(bad.validate("h").unwrap_err().contains("max_messages"));
    }
}
