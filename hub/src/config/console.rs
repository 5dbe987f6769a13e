//! The `[console]` configuration section: the operator console at `/console/`.

use serde::{Deserialize, Serialize};

/// `[console]`: the operator console and its API.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ConsoleSettings {
    /// Whether `/console/` and `/console/api/…` are served (default true). The API always
    /// needs a token signed with an access key; the page asks for the key unless the browser
    /// is on the hub's own machine and the hub listens on loopback.
    pub enabled: bool,
    /// Whether the live trace may show message payloads to a watcher who asks for them.
    /// Unset: only when the hub listens on a loopback address, since payloads may be private.
    pub trace_payloads: Option<bool>,
    /// Seconds of per-second samples the console keeps for its charts (10–3600, default 300).
    pub history_secs: u32,
}

impl Default for ConsoleSettings {
    fn default() -> Self {
        ConsoleSettings {
            enabled: true,
            trace_payloads: None,
            history_secs: 300,
        }
    }
}

impl ConsoleSettings {
    /// Whether the live trace may carry payloads on a hub listening on `listen`.
    pub fn payloads_allowed(&self, listen: std::net::SocketAddr) -> bool {
        self.trace_payloads.unwrap_or(listen.ip().is_loopback())
    }

    /// Checks ranges.
    pub fn validate(&self) -> Result<(), String> {
        if !(10..=3600).contains(&self.history_secs) {
            return Err(format!(
                "console.history_secs must be 10 to 3600 (got {})",
                self.history_secs
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_default_to_loopback_only_and_history_is_bounded() {
        let s = ConsoleSettings::default();
        assert!(s.payloads_allowed("127.0.0.1:1".parse().expect("addr")));
        assert!(!s.payloads_allowed("0.0.0.0:1".parse().expect("addr")));
        let off = ConsoleSettings {
            trace_payloads: Some(false),
            ..ConsoleSettings::default()
        };
        assert!(!off.payloads_allowed("127.0.0.1:1".parse().expect("addr")));
        assert!(s.validate().is_ok());
        let huge = ConsoleSettings {
            history_secs: 100_000,
            ..ConsoleSettings::default()
        };
        assert!(huge.validate().is_err());
    }
}
