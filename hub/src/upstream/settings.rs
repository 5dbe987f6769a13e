//! Event handler settings: which upstream URL hears which events of a hub, from the TOML file
//! (`[[hubs.<hub>.event_handlers]]`) or the `--upstream` flag, plus the global `[upstream]`
//! timing and queue settings.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// System events a handler can subscribe to.
pub const SYSTEM_EVENTS: [&str; 5] = ["connect", "connected", "disconnected", "joined", "left"];

/// One entry of a hub's ordered `event_handlers` list; the first matching entry wins.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct EventHandlerSettings {
    /// URL with optional `{hub}` and `{event}` placeholders in its path, e.g.
    /// `http://127.0.0.1:3000/api/{hub}/{event}`.
    pub url_template: String,
    /// User events sent here: `*` for all, or names separated by commas; empty for none.
    pub user_event_pattern: String,
    /// System events sent here: any of connect, connected, disconnected, joined, left.
    pub system_events: Vec<String>,
}

/// An event as handlers match it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind<'a> {
    /// Blocking `connect`.
    Connect,
    /// `connected` notification.
    Connected,
    /// `disconnected` notification.
    Disconnected,
    /// A connection joined a group.
    Joined,
    /// A connection left a group.
    Left,
    /// A user event with its name (`message` for simple clients).
    User(&'a str),
}

impl EventKind<'_> {
    /// The CloudEvents `ce-type`.
    pub fn ce_type(&self) -> String {
        match self {
            EventKind::Connect => "azure.webpubsub.sys.connect".into(),
            EventKind::Connected => "azure.webpubsub.sys.connected".into(),
            EventKind::Disconnected => "azure.webpubsub.sys.disconnected".into(),
            EventKind::Joined => "azure.webpubsub.gp.joined".into(),
            EventKind::Left => "azure.webpubsub.gp.left".into(),
            EventKind::User(e) => format!("azure.webpubsub.user.{e}"),
        }
    }

    /// The `ce-eventName` (and the `{event}` of the URL template).
    pub fn name(&self) -> &str {
        match self {
            EventKind::Connect => "connect",
            EventKind::Connected => "connected",
            EventKind::Disconnected => "disconnected",
            EventKind::Joined => "joined",
            EventKind::Left => "left",
            EventKind::User(e) => e,
        }
    }
}

impl EventHandlerSettings {
    /// Whether this handler takes `event`.
    pub fn handles(&self, event: EventKind<'_>) -> bool {
        match event {
            EventKind::User(name) => self
                .user_event_pattern
                .split(',')
                .map(str::trim)
                .any(|p| p == "*" || (!p.is_empty() && p.eq_ignore_ascii_case(name))),
            sys => self
                .system_events
                .iter()
                .any(|s| s.eq_ignore_ascii_case(sys.name())),
        }
    }

    /// Checks the template and the event names.
    pub fn validate(&self, hub: &str) -> Result<(), String> {
        let url = &self.url_template;
        let rest = url
            .strip_prefix("https://")
            .or_else(|| url.strip_prefix("http://"))
            .ok_or_else(|| {
                format!("hub '{hub}': url_template '{url}' must start with https:// or http://")
            })?;
        let host = rest.split(['/', '?']).next().unwrap_or_default();
        if host.is_empty() || host.contains('{') {
            return Err(format!(
                "hub '{hub}': url_template '{url}' needs a host, and {{hub}}/{{event}} may appear only after it"
            ));
        }
        for s in &self.system_events {
            if !SYSTEM_EVENTS.iter().any(|k| k.eq_ignore_ascii_case(s)) {
                return Err(format!(
                    "hub '{hub}': unknown system event '{s}'; expected one of {}",
                    SYSTEM_EVENTS.join(", ")
                ));
            }
        }
        Ok(())
    }

    /// Parses the `--upstream` flag form:
    /// `hub=chat;url=http://h/api/{hub}/{event};events=*;system=connect,connected`.
    /// Returns the hub name and the handler.
    pub fn parse_flag(s: &str) -> Result<(String, Self), String> {
        let mut hub = None;
        let mut h = EventHandlerSettings::default();
        for part in s.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| format!("--upstream: '{part}' is not key=value"))?;
            match k.trim().to_ascii_lowercase().as_str() {
                "hub" => hub = Some(v.trim().to_string()),
                "url" => h.url_template = v.trim().to_string(),
                "events" => h.user_event_pattern = v.trim().to_string(),
                "system" => {
                    h.system_events = v
                        .split(',')
                        .map(str::trim)
                        .filter(|x| !x.is_empty())
                        .map(str::to_string)
                        .collect()
                }
                other => {
                    return Err(format!(
                        "--upstream: unknown key '{other}'; expected hub, url, events, system"
                    ));
                }
            }
        }
        let hub = hub.ok_or("--upstream needs hub=<name>")?;
        if h.url_template.is_empty() {
            return Err("--upstream needs url=<template>".into());
        }
        Ok((hub, h))
    }
}

/// Global upstream settings (`[upstream]` in the TOML file).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamSettings {
    /// Timeout of every upstream request, in milliseconds (default 5000).
    pub timeout_ms: u64,
    /// Extra attempts for failed non-blocking events (connected, disconnected, joined, left);
    /// default 3.
    pub retries: u32,
    /// First retry delay in milliseconds, doubled on each attempt (default 200).
    pub retry_backoff_ms: u64,
    /// Non-blocking events waiting to be sent, across the node (default 10000); beyond that,
    /// new ones are dropped and counted.
    pub queue_capacity: usize,
    /// Tasks sending non-blocking events (default 8).
    pub workers: usize,
    /// User events queued per connection while one is in flight (default 1000); beyond that,
    /// or beyond `max_pending_bytes_per_connection`, the event fails (an error ack, or a
    /// dropped simple client).
    pub max_pending_per_connection: usize,
    /// Payload bytes queued per connection for the upstream (default 16 MiB).
    pub max_pending_bytes_per_connection: usize,
    /// A PEM file of certificate authorities trusted for `https://` upstreams besides the
    /// public web roots, for handlers behind a private CA (default none).
    pub ca_file: Option<PathBuf>,
}

impl Default for UpstreamSettings {
    fn default() -> Self {
        UpstreamSettings {
            timeout_ms: 5000,
            retries: 3,
            retry_backoff_ms: 200,
            queue_capacity: 10_000,
            workers: 8,
            max_pending_per_connection: 1000,
            max_pending_bytes_per_connection: 16 * 1024 * 1024,
            ca_file: None,
        }
    }
}

impl UpstreamSettings {
    /// Checks ranges.
    pub fn validate(&self) -> Result<(), String> {
        if self.timeout_ms == 0 {
            return Err("upstream.timeout_ms must be at least 1".into());
        }
        if self.queue_capacity == 0
            || self.workers == 0
            || self.max_pending_per_connection == 0
            || self.max_pending_bytes_per_connection == 0
        {
            return Err(
                "upstream.queue_capacity, workers and max_pending_(bytes_)per_connection must be > 0"
                    .into(),
            );
        }
        if let Some(path) = &self.ca_file {
            extra_roots(path)?;
        }
        Ok(())
    }
}

/// Reads the certificates of `upstream.ca_file`; an unreadable file or one holding no
/// certificate is an error that names the file.
pub fn extra_roots(path: &Path) -> Result<Vec<reqwest::Certificate>, String> {
    let pem =
        std::fs::read(path).map_err(|e| format!("upstream.ca_file {}: {e}", path.display()))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
        format!(
            "upstream.ca_file {}: not PEM certificates: {e}",
            path.display()
        )
    })?;
    if certs.is_empty() {
        return Err(format!(
            "upstream.ca_file {}: holds no certificate",
            path.display()
        ));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matching_and_flag_form() {
        let (hub, h) = EventHandlerSettings::parse_flag(
            "hub=Chat; url=http://127.0.0.1:9/api/{hub}/{event}; events=message, Echo; system=connect,connected",
        )
        .unwrap();
        assert_eq!(hub, "Chat");
        assert!(h.validate(&hub).is_ok());
        assert!(h.handles(EventKind::User("message")));
        assert!(h.handles(EventKind::User("echo")));
        assert!(!h.handles(EventKind::User("other")));
        assert!(h.handles(EventKind::Connect));
        assert!(!h.handles(EventKind::Disconnected));
        let all = EventHandlerSettings {
            user_event_pattern: "*".into(),
            ..Default::default()
        };
        assert!(all.handles(EventKind::User("anything")));
        assert!(!EventHandlerSettings::default().handles(EventKind::User("x")));
        assert!(EventHandlerSettings::parse_flag("url=http://h/").is_err());
        assert!(EventHandlerSettings::parse_flag("hub=a;bogus=1").is_err());
    }

    #[test]
    fn validation() {
        let bad = |url: &str, sys: &[&str]| {
            EventHandlerSettings {
                url_template: url.into(),
                user_event_pattern: "*".into(),
                system_events: sys.iter().map(|s| s.to_string()).collect(),
            }
            .validate("h")
            .unwrap_err()
        };
        assert!(bad("ftp://h/x", &[]).contains("https://"));
        assert!(bad("https://{hub}/x", &[]).contains("host"));
        assert!(bad("http://{hub}.h/x", &[]).contains("host"));
        assert!(bad("http://h/x", &["connecting"]).contains("unknown system event"));
        assert_eq!(EventKind::User("m").ce_type(), "azure.webpubsub.user.m");
        assert_eq!(EventKind::Joined.ce_type(), "azure.webpubsub.gp.joined");
    }
}
