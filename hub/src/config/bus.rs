//! The `[bus]` and `[demo]` configuration sections: which bus transport the hub runs, which hub
//! carries task events, and whether the demo pages may mint tokens.

use serde::{Deserialize, Serialize};

/// Which storage engine the in-process bus uses.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum BusTransport {
    /// In-memory, one process (the embedded default).
    #[default]
    Memory,
    /// Redis Streams, shared by every hub node and agent process on the same Redis.
    Redis,
}

/// `[bus]`: the agent bus running inside the hub.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct BusSettings {
    /// `memory` (default) or `redis`.
    pub transport: BusTransport,
    /// Redis URL for the bus; defaults to the hub's first `redis_url`.
    pub redis_url: Option<String>,
    /// Hub whose groups (`task.<id>`, `context.<id>`, `correlation.<id>`, `agent.<id>`) carry
    /// task events, and whose client tokens the bus endpoints accept (default `bus`).
    pub hub: String,
    /// Capability an A2A message goes to when it names none (default: the only capability
    /// registered agents serve, if there is exactly one).
    pub a2a_capability: Option<String>,
    /// Shorter leases and polling, for demos and tests (default false).
    pub fast: bool,
    /// Whether A2A push-notification webhooks may be on loopback, private or link-local
    /// addresses (default false: a webhook cannot reach into the hub's own network).
    pub push_allow_private: bool,
}

impl Default for BusSettings {
    fn default() -> Self {
        BusSettings {
            transport: BusTransport::Memory,
            redis_url: None,
            hub: "bus".into(),
            a2a_capability: None,
            fast: false,
            push_allow_private: false,
        }
    }
}

/// `[demo]`: the pages under `/demo/` and their token endpoint.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct DemoSettings {
    /// Whether `/demo/token` mints tokens. Unset: on only when the hub listens on a loopback
    /// address. Setting it to true on any other address is a configuration error: a token
    /// mint anyone on the network can call would hand out every role.
    pub enabled: Option<bool>,
}

impl DemoSettings {
    /// Whether the token endpoint is on for a hub listening on `listen`.
    pub fn effective(&self, listen: std::net::SocketAddr) -> Result<bool, String> {
        let loopback = listen.ip().is_loopback();
        match self.enabled {
            None => Ok(loopback),
            Some(true) if !loopback => Err(format!(
                "demo.enabled = true needs a loopback listen address (got {listen}): the demo \
                 token endpoint must never be reachable from the network"
            )),
            Some(on) => Ok(on),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_tokens_only_on_loopback() {
        let local: std::net::SocketAddr = "127.0.0.1:8080".parse().expect("addr");
        let public: std::net::SocketAddr = "0.0.0.0:8080".parse().expect("addr");
        let unset = DemoSettings::default();
        assert_eq!(unset.effective(local), Ok(true));
        assert_eq!(unset.effective(public), Ok(false));
        let on = DemoSettings {
            enabled: Some(true),
        };
        assert!(on.effective(public).is_err());
        let off = DemoSettings {
            enabled: Some(false),
        };
        assert_eq!(off.effective(local), Ok(false));
    }
}
