//! The hub's typed configuration: command-line flags and environment variables over an optional
//! TOML file, over documented defaults that work out of the box.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};
use serde::{Deserialize, Serialize};

pub use crate::limits::Limits;

pub mod bus;
pub mod console;
pub mod history;
mod report;
pub mod token;

/// Default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// Command line of the `nerve` binary.
#[derive(Debug, Parser)]
#[command(
    name = "nerve",
    version,
    about = "Nerve: a real-time WebSocket pub/sub hub, wire-compatible with Azure Web PubSub"
)]
pub struct Cli {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, env = "NERVE_LISTEN", global = true)]
    pub listen: Option<SocketAddr>,
    /// Access key; repeat (or separate with commas in the env var) for a secondary key during
    /// rotation. A random key is generated when none is given.
    #[arg(
        long = "access-key",
        env = "NERVE_ACCESS_KEY",
        value_delimiter = ',',
        hide_env_values = true,
        global = true
    )]
    pub access_keys: Vec<String>,
    /// TOML configuration file.
    #[arg(long, env = "NERVE_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Log filter, e.g. `info`, `warn`, `nerve_hub=debug`.
    #[arg(long, env = "NERVE_LOG_LEVEL")]
    pub log_level: Option<String>,
    /// Public endpoint printed in the connection string (defaults to http://<listen address>).
    #[arg(long, env = "NERVE_PUBLIC_ENDPOINT", global = true)]
    pub public_endpoint: Option<String>,
    /// Upstream event handler, repeatable:
    /// `hub=chat;url=http://127.0.0.1:3000/api/{hub}/{event};events=*;system=connect,connected,disconnected`.
    /// Added after the handlers of the configuration file.
    #[arg(long = "upstream", env = "NERVE_UPSTREAM")]
    pub upstream: Vec<String>,
    /// Timeout of every upstream request, in milliseconds (default 5000).
    #[arg(long, env = "NERVE_UPSTREAM_TIMEOUT_MS")]
    pub upstream_timeout_ms: Option<u64>,
    /// Redis URL: nodes sharing one Redis act as one hub. Several comma-separated URLs mean a
    /// Redis Cluster. None: a single in-memory node.
    #[arg(long = "redis", env = "NERVE_REDIS_URL", value_delimiter = ',')]
    pub redis: Vec<String>,
    /// Treat the Redis URL as a Redis Cluster (sharded pub/sub) even when only one is given.
    #[arg(long, env = "NERVE_REDIS_CLUSTER")]
    pub redis_cluster: bool,
    /// This node's id in a cluster (default: a random id per process).
    #[arg(long, env = "NERVE_NODE_ID")]
    pub node_id: Option<String>,
    /// TLS certificate chain (PEM); with --tls-key the hub serves https and wss.
    #[arg(long, env = "NERVE_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, env = "NERVE_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// OTLP/HTTP collector to export traces to, e.g. `http://127.0.0.1:4318` (spans are posted
    /// to `<url>/v1/traces`). Default: no export. `OTEL_EXPORTER_OTLP_ENDPOINT` is honoured too.
    #[arg(long, env = "NERVE_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
    /// The standard OpenTelemetry variable, used when `--otlp-endpoint` is not given.
    #[arg(
        long = "otel-exporter-otlp-endpoint",
        env = "OTEL_EXPORTER_OTLP_ENDPOINT",
        hide = true
    )]
    pub otel_exporter_otlp_endpoint: Option<String>,
    /// `service.name` of exported traces (default `nerve`).
    #[arg(long = "otel-service-name", env = "OTEL_SERVICE_NAME")]
    pub otel_service_name: Option<String>,
    /// Subcommand; none starts the hub.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands of `nerve`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Configuration tools.
    Config {
        /// What to do.
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Print a client URL (or a REST bearer token) signed with the hub's access key.
    Token(token::TokenArgs),
}

/// `nerve config …`
#[derive(Debug, Subcommand)]
pub enum ConfigAction {
    /// Validate a TOML configuration file and print the effective settings.
    Check {
        /// The file.
        file: PathBuf,
    },
}

/// Settings of one hub.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HubSettings {
    /// Admit clients without a token (default false).
    pub anonymous_connect: bool,
    /// Upstream event handlers, in priority order (`[[hubs.<hub>.event_handlers]]`).
    pub event_handlers: Vec<crate::upstream::EventHandlerSettings>,
    /// Group history, when the hub keeps one (`history = { max_messages, max_age_secs }`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history: Option<history::HistorySettings>,
    /// Publish every join and leave of a group `g` to the group `$presence.g` (default false).
    pub presence_events: bool,
}

/// Scale-out timing and retention (`[cluster]`), used when Redis is configured.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterSettings {
    /// Heartbeat interval, in milliseconds (default 1000).
    pub heartbeat_ms: u64,
    /// A node silent this long is dead and its connections leave presence, in milliseconds
    /// (default 5000).
    pub presence_ttl_ms: u64,
    /// Messages kept per group for reliable clients resuming on another node (default 1000).
    pub history_len: usize,
    /// How long a group's history outlives its last message, in seconds (default 3600).
    pub history_ttl_secs: u64,
    /// How long a reliable session's shared record outlives its last write, in seconds
    /// (default 86400).
    pub session_ttl_secs: u64,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        ClusterSettings {
            heartbeat_ms: 1000,
            presence_ttl_ms: 5000,
            history_len: 1000,
            history_ttl_secs: 3600,
            session_ttl_secs: 86400,
        }
    }
}

/// Browser-facing security (`[security]`).
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SecuritySettings {
    /// Origins (`scheme://host[:port]`) whose pages may open WebSocket connections; requests
    /// without an `Origin` header (servers, SDKs, CLI tools) are not affected. Default empty:
    /// every origin, as the service does (the access token is the credential).
    pub allowed_origins: Vec<String>,
    /// Origins whose pages may call the REST API (CORS); `"*"` for any. Default empty: no
    /// CORS headers, so browsers keep cross-origin REST calls out.
    pub cors_origins: Vec<String>,
}

/// The configuration file's shape; every field is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileConfig {
    /// Listen address.
    pub listen: Option<SocketAddr>,
    /// Access keys, primary first.
    pub access_keys: Vec<String>,
    /// Log filter.
    pub log_level: Option<String>,
    /// Public endpoint.
    pub public_endpoint: Option<String>,
    /// Limits.
    pub limits: Limits,
    /// Per-hub settings, by hub name.
    pub hubs: BTreeMap<String, HubSettings>,
    /// Upstream timing and queues.
    pub upstream: crate::upstream::UpstreamSettings,
    /// Redis URL (a string, or a list for a Redis Cluster).
    pub redis_url: Option<RedisUrls>,
    /// Treat a single Redis URL as a Redis Cluster.
    pub redis_cluster: bool,
    /// This node's id.
    pub node_id: Option<String>,
    /// Scale-out timing and retention.
    pub cluster: ClusterSettings,
    /// The agent bus inside the hub.
    pub bus: bus::BusSettings,
    /// The demo pages and their token endpoint.
    pub demo: bus::DemoSettings,
    /// The operator console.
    pub console: console::ConsoleSettings,
    /// TLS certificate and key.
    pub tls: crate::tls::TlsSettings,
    /// Browser origins and CORS.
    pub security: SecuritySettings,
    /// Trace export.
    pub telemetry: crate::telemetry::TelemetrySettings,
}

/// One Redis URL or several (a Redis Cluster's seed nodes).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum RedisUrls {
    /// One URL (comma-separated for several).
    One(String),
    /// Several URLs.
    Many(Vec<String>),
}

/// The effective configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Listen address.
    pub listen: SocketAddr,
    /// Access keys, primary first; never empty.
    pub access_keys: Vec<String>,
    /// True when the key was generated because none was configured.
    pub generated_key: bool,
    /// Log filter.
    pub log_level: String,
    /// Public endpoint, if configured.
    pub public_endpoint: Option<String>,
    /// Limits.
    pub limits: Limits,
    /// Per-hub settings (lowercase names).
    pub hubs: BTreeMap<String, HubSettings>,
    /// Upstream timing and queues.
    pub upstream: crate::upstream::UpstreamSettings,
    /// Redis URLs; empty for a single in-memory node.
    pub redis_urls: Vec<String>,
    /// Use Redis Cluster (sharded pub/sub).
    pub redis_cluster: bool,
    /// This node's id.
    pub node_id: String,
    /// Scale-out timing and retention.
    pub cluster: ClusterSettings,
    /// The agent bus inside the hub.
    pub bus: bus::BusSettings,
    /// The demo pages' settings as configured.
    pub demo: bus::DemoSettings,
    /// Whether `/demo/token` mints tokens (resolved from `[demo]` and the listen address).
    pub demo_tokens: bool,
    /// The operator console.
    pub console: console::ConsoleSettings,
    /// TLS certificate and key (flags over the file).
    pub tls: crate::tls::TlsSettings,
    /// Browser origins and CORS.
    pub security: SecuritySettings,
    /// Trace export (flags and environment over the file).
    pub telemetry: crate::telemetry::TelemetrySettings,
}

/// A configuration error, with the file it came from.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML of the expected shape.
    #[error("invalid configuration in {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong, with line and column.
        message: String,
    },
    /// A value is out of range.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// Reads and parses a configuration file.
pub fn load_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

impl Config {
    /// Merges flags/env over the file over defaults.
    pub fn resolve(cli: &Cli) -> Result<Self, ConfigError> {
        let file = match &cli.config {
            Some(p) => load_file(p)?,
            None => FileConfig::default(),
        };
        Self::merge(cli, file)
    }

    /// Merges flags/env over an already parsed file.
    pub fn merge(cli: &Cli, file: FileConfig) -> Result<Self, ConfigError> {
        let mut keys: Vec<String> = if cli.access_keys.is_empty() {
            file.access_keys
        } else {
            cli.access_keys.clone()
        };
        keys.retain(|k| !k.is_empty());
        let generated_key = keys.is_empty();
        if generated_key {
            keys.push(random_key());
        }
        let listen = match cli.listen.or(file.listen) {
            Some(l) => l,
            None => DEFAULT_LISTEN
                .parse()
                .map_err(|e| ConfigError::Invalid(format!("default listen address: {e}")))?,
        };
        let mut hubs: BTreeMap<String, HubSettings> = file
            .hubs
            .into_iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v))
            .collect();
        for flag in &cli.upstream {
            let (hub, handler) = crate::upstream::EventHandlerSettings::parse_flag(flag)
                .map_err(ConfigError::Invalid)?;
            hubs.entry(hub.to_ascii_lowercase())
                .or_default()
                .event_handlers
                .push(handler);
        }
        let mut upstream = file.upstream;
        if let Some(ms) = cli.upstream_timeout_ms {
            upstream.timeout_ms = ms;
        }
        let mut redis_urls: Vec<String> = if cli.redis.is_empty() {
            match file.redis_url {
                Some(RedisUrls::One(u)) => u.split(',').map(str::to_string).collect(),
                Some(RedisUrls::Many(v)) => v,
                None => Vec::new(),
            }
        } else {
            cli.redis.clone()
        };
        redis_urls.retain(|u| !u.trim().is_empty());
        let node_id = cli
            .node_id
            .clone()
            .or(file.node_id)
            .unwrap_or_else(|| format!("{:016x}", rand::random::<u64>()));
        let demo_tokens = file.demo.effective(listen).map_err(ConfigError::Invalid)?;
        let mut tls = file.tls;
        if cli.tls_cert.is_some() || cli.tls_key.is_some() {
            tls.cert_file = cli.tls_cert.clone();
            tls.key_file = cli.tls_key.clone();
        }
        let mut telemetry = file.telemetry;
        if let Some(e) = cli
            .otlp_endpoint
            .clone()
            .or_else(|| cli.otel_exporter_otlp_endpoint.clone())
        {
            telemetry.otlp_endpoint = Some(e);
        }
        telemetry.otlp_endpoint = telemetry.otlp_endpoint.filter(|e| !e.trim().is_empty());
        if let Some(n) = cli.otel_service_name.clone().filter(|n| !n.is_empty()) {
            telemetry.service_name = n;
        }
        let config = Config {
            telemetry,
            tls,
            security: file.security,
            bus: file.bus,
            demo: file.demo,
            demo_tokens,
            console: file.console,
            redis_urls,
            redis_cluster: cli.redis_cluster || file.redis_cluster,
            node_id,
            cluster: file.cluster,
            listen,
            access_keys: keys,
            generated_key,
            log_level: cli
                .log_level
                .clone()
                .or(file.log_level)
                .unwrap_or_else(|| "info".into()),
            public_endpoint: cli.public_endpoint.clone().or(file.public_endpoint),
            limits: file.limits,
            hubs,
            upstream,
        };
        config.validate()?;
        Ok(config)
    }

    /// Checks ranges.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let l = &self.limits;
        let bad = |m: &str| Err(ConfigError::Invalid(m.to_string()));
        self.console.validate().map_err(ConfigError::Invalid)?;
        if l.max_frame_bytes < 1024 {
            return bad("limits.max_frame_bytes must be at least 1024");
        }
        if l.outbox_messages == 0 || l.outbox_bytes < l.max_frame_bytes {
            return bad(
                "limits.outbox_messages must be > 0 and limits.outbox_bytes >= max_frame_bytes",
            );
        }
        if !(1..=120).contains(&l.keepalive_secs) {
            return bad("limits.keepalive_secs must be between 1 and 120");
        }
        if l.reconnect_window_secs == 0 {
            return bad("limits.reconnect_window_secs must be at least 1");
        }
        if l.bytes_per_sec > 0 && l.byte_burst.max(l.bytes_per_sec) < l.max_frame_bytes as u64 {
            return bad("limits.byte_burst must be at least limits.max_frame_bytes");
        }
        if l.handshake_timeout_ms < 100 {
            return bad("limits.handshake_timeout_ms must be at least 100");
        }
        for (name, hub) in &self.hubs {
            if !crate::names::valid_hub_name(name) {
                return Err(ConfigError::Invalid(format!("invalid hub name '{name}'")));
            }
            for h in &hub.event_handlers {
                h.validate(name).map_err(ConfigError::Invalid)?;
            }
            if let Some(h) = &hub.history {
                h.validate(name).map_err(ConfigError::Invalid)?;
            }
        }
        self.upstream.validate().map_err(ConfigError::Invalid)?;
        self.tls.validate().map_err(ConfigError::Invalid)?;
        self.telemetry.validate().map_err(ConfigError::Invalid)?;
        let c = &self.cluster;
        if c.heartbeat_ms == 0 || c.presence_ttl_ms < c.heartbeat_ms * 2 {
            return bad(
                "cluster.presence_ttl_ms must be at least twice cluster.heartbeat_ms (> 0)",
            );
        }
        if c.history_len == 0 || c.history_ttl_secs == 0 || c.session_ttl_secs == 0 {
            return bad("cluster.history_len, history_ttl_secs and session_ttl_secs must be > 0");
        }
        if self.node_id.is_empty() || self.node_id.contains(['#', '\n', '{', '}']) {
            return bad("node_id must be non-empty without '#', '{', '}' or newlines");
        }
        for u in &self.redis_urls {
            url::Url::parse(u)
                .map_err(|e| ConfigError::Invalid(format!("invalid Redis URL '{u}': {e}")))?;
        }
        Ok(())
    }

    /// Settings of a hub (defaults when not configured).
    pub fn hub_settings(&self, hub: &str) -> HubSettings {
        self.hubs.get(hub).cloned().unwrap_or_default()
    }

    /// The endpoint clients and SDKs use: the public endpoint, or http(s)://<listen address>.
    /// A hub on every interface (0.0.0.0, `::`) is named by the loopback address of that
    /// family: a URL cannot name "every interface", and `ws://0.0.0.0:…` fails in browsers.
    pub fn endpoint(&self, bound: SocketAddr) -> String {
        let scheme = if self.tls.enabled() { "https" } else { "http" };
        match &self.public_endpoint {
            Some(e) => e.trim_end_matches('/').to_string(),
            None => format!("{scheme}://{}", reachable(bound)),
        }
    }
}

/// `ws(s)://…` for an `http(s)://…` endpoint: where its WebSocket clients connect.
pub fn ws_endpoint(http: &str) -> String {
    http.replacen("http://", "ws://", 1)
        .replacen("https://", "wss://", 1)
}

/// `bound`, with an unspecified address replaced by the loopback address of its family.
pub fn reachable(bound: SocketAddr) -> SocketAddr {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    match bound.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => (Ipv4Addr::LOCALHOST, bound.port()).into(),
        IpAddr::V6(ip) if ip.is_unspecified() => (Ipv6Addr::LOCALHOST, bound.port()).into(),
        _ => bound,
    }
}

fn random_key() -> String {
    use base64::Engine;
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli(args: &[&str]) -> Cli {
        Cli::parse_from(std::iter::once("nerve").chain(args.iter().copied()))
    }

    #[test]
    fn defaults_work_out_of_the_box() {
        let c = Config::merge(&cli(&[]), FileConfig::default()).unwrap();
        assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
        assert!(c.generated_key && c.access_keys[0].len() >= 40);
        assert_eq!(c.limits, Limits::default());
        assert!(c.redis_urls.is_empty());
    }

    #[test]
    fn an_unspecified_listen_address_is_shown_as_loopback() {
        let c = Config::merge(&cli(&["--listen", "0.0.0.0:8080"]), FileConfig::default()).unwrap();
        assert_eq!(c.endpoint(c.listen), "http://127.0.0.1:8080");
        let v6 = "[::]:9000".parse().unwrap();
        assert_eq!(c.endpoint(v6), "http://[::1]:9000");
        let c = Config::merge(
            &cli(&["--public-endpoint", "https://pubsub.example/"]),
            FileConfig::default(),
        )
        .unwrap();
        assert_eq!(c.endpoint(c.listen), "https://pubsub.example");
        assert_eq!(
            ws_endpoint("https://pubsub.example"),
            "wss://pubsub.example"
        );
        assert_eq!(ws_endpoint("http://h:1"), "ws://h:1");
    }

    #[test]
    fn redis_from_flags_or_file() {
        let file: FileConfig =
            toml::from_str("redis_url = \"redis://a:1/\"\n[cluster]\nhistory_len = 5\n").unwrap();
        let c = Config::merge(&cli(&["--node-id", "n1"]), file).unwrap();
        assert_eq!(c.redis_urls, vec!["redis://a:1/"]);
        assert_eq!((c.node_id.as_str(), c.cluster.history_len), ("n1", 5));
        let c = Config::merge(
            &cli(&["--redis", "redis://a:1/,redis://b:2/"]),
            FileConfig::default(),
        )
        .unwrap();
        assert_eq!(c.redis_urls.len(), 2);
        assert!(Config::merge(&cli(&["--redis", "not a url"]), FileConfig::default()).is_err());
    }

    #[test]
    fn flags_override_file() {
        let file: FileConfig = toml::from_str(
            "listen = \"127.0.0.1:9000\"\naccess_keys = [\"a\", \"b\"]\n[limits]\noutbox_messages = 5\n[hubs.Chat]\nanonymous_connect = true\n",
        )
        .unwrap();
        let c = Config::merge(&cli(&["--listen", "127.0.0.1:9001"]), file).unwrap();
        assert_eq!(c.listen.port(), 9001);
        assert_eq!(c.access_keys, vec!["a", "b"]);
        assert_eq!(c.limits.outbox_messages, 5);
        assert!(c.hub_settings("chat").anonymous_connect);
    }

    #[test]
    fn telemetry_from_flags_env_names_or_file() {
        let c = Config::merge(&cli(&[]), FileConfig::default()).unwrap();
        assert_eq!(c.telemetry.otlp_endpoint, None);
        assert_eq!(c.telemetry.service_name, "nerve");
        let file: FileConfig = toml::from_str(
            "[telemetry]\notlp_endpoint = \"http://file:4318\"\nservice_name = \"edge\"\n",
        )
        .unwrap();
        let c = Config::merge(&cli(&[]), file).unwrap();
        assert_eq!(
            c.telemetry.traces_url().as_deref(),
            Some("http://file:4318/v1/traces")
        );
        assert_eq!(c.telemetry.service_name, "edge");
        let c = Config::merge(
            &cli(&[
                "--otel-exporter-otlp-endpoint",
                "http://std:4318",
                "--otel-service-name",
                "hub-a",
            ]),
            FileConfig::default(),
        )
        .unwrap();
        assert_eq!(
            c.telemetry.otlp_endpoint.as_deref(),
            Some("http://std:4318")
        );
        assert_eq!(c.telemetry.service_name, "hub-a");
        let c = Config::merge(
            &cli(&[
                "--otlp-endpoint",
                "http://ours:4318",
                "--otel-exporter-otlp-endpoint",
                "http://std:4318",
            ]),
            FileConfig::default(),
        )
        .unwrap();
        assert_eq!(
            c.telemetry.otlp_endpoint.as_deref(),
            Some("http://ours:4318")
        );
        assert!(
            Config::merge(&cli(&["--otlp-endpoint", "ftp://x"]), FileConfig::default()).is_err()
        );
    }

    #[test]
    fn unknown_keys_and_bad_ranges_are_clear_errors() {
        let e = toml::from_str::<FileConfig>("listen_addr = 1")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field"), "{e}");
        let file: FileConfig = toml::from_str("[limits]\nkeepalive_secs = 0\n").unwrap();
        assert!(Config::merge(&cli(&[]), file).is_err());
    }
}
