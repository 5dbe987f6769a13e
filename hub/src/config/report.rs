//! What `nerve config check` prints: the effective settings as TOML a person can read (and
//! paste back into a file), every section with the defaults filled in and a comment on what
//! it means for this hub. Secrets stay out: access keys are counted, passwords and query
//! strings (webhook function keys) in URLs are masked.

use serde::Serialize;

use super::{Config, HubSettings};
use crate::config::bus::BusTransport;

impl Config {
    /// The effective settings, section by section, with secrets masked.
    pub fn report(&self) -> String {
        let mut out = String::new();
        let mut line = |s: String| {
            out.push_str(&s);
            out.push('\n');
        };
        line(format!("listen = \"{}\"", self.listen));
        line(if self.generated_key {
            "# access_keys: none; a random key is generated at each start".into()
        } else {
            format!(
                "# access_keys: {} (not shown); the first signs what the hub issues",
                self.access_keys.len()
            )
        });
        line(format!("log_level = {}", quoted(&self.log_level)));
        line(match &self.public_endpoint {
            Some(e) => format!("public_endpoint = {}", quoted(e)),
            None => format!(
                "# public_endpoint: not set; clients are told {}",
                self.endpoint(self.listen)
            ),
        });
        line(if self.redis_urls.is_empty() {
            "# redis_url: not set; one node, in memory".into()
        } else {
            let urls: Vec<String> = self
                .redis_urls
                .iter()
                .map(|u| quoted(&mask_url(u)))
                .collect();
            format!("redis_url = [{}]", urls.join(", "))
        });
        if self.redis_cluster {
            line("redis_cluster = true".into());
        }

        section(&mut out, &["limits"], &self.limits, &[]);
        let cluster_note = if self.redis_urls.is_empty() {
            "used only with Redis"
        } else {
            "nodes on the same Redis form one hub"
        };
        section(&mut out, &["cluster"], &self.cluster, &[cluster_note]);
        let bus_note = match self.bus.transport {
            BusTransport::Memory => "the agent bus runs in this process, in memory".to_string(),
            BusTransport::Redis => format!(
                "the agent bus runs on Redis Streams at {}",
                self.bus
                    .redis_url
                    .as_deref()
                    .or(self.redis_urls.first().map(String::as_str))
                    .map_or_else(|| "redis://127.0.0.1:6379/".to_string(), mask_url)
            ),
        };
        let mut bus = self.bus.clone();
        bus.redis_url = bus.redis_url.as_deref().map(mask_url);
        section(&mut out, &["bus"], &bus, &[&bus_note]);
        let demo_note = if self.demo_tokens {
            "the demo pages and their token endpoint are on (a loopback listener)"
        } else if self.listen.ip().is_loopback() {
            "the demo pages are off"
        } else {
            "the demo pages are off: they run only on a loopback listener"
        };
        section(&mut out, &["demo"], &self.demo, &[demo_note]);
        let console_note = match (
            self.console.enabled,
            self.console.payloads_allowed(self.listen),
        ) {
            (false, _) => "the console is off",
            (true, true) => {
                "the console is at /console/; its live trace shows payloads to watchers who ask"
            }
            (true, false) => "the console is at /console/; its live trace shows no payloads",
        };
        section(&mut out, &["console"], &self.console, &[console_note]);
        let tls_note = if self.tls.enabled() {
            "the certificate chain and key load and match: https and wss"
        } else {
            "off: plain http and ws"
        };
        section(&mut out, &["tls"], &self.tls, &[tls_note]);
        let origins = if self.security.allowed_origins.is_empty() {
            "allowed_origins empty: pages of any origin may open WebSockets (the token decides)"
        } else {
            "allowed_origins: only pages of these origins may open WebSockets"
        };
        let cors = if self.security.cors_origins.is_empty() {
            "cors_origins empty: no CORS headers, browsers keep cross-origin REST calls out"
        } else {
            "cors_origins: pages of these origins may call the REST API"
        };
        section(&mut out, &["security"], &self.security, &[origins, cors]);
        section(&mut out, &["upstream"], &self.upstream, &[]);
        let traces = match self.telemetry.traces_url() {
            Some(url) => format!("spans go to {} over OTLP/HTTP", mask_url(&url)),
            None => "no trace export".to_string(),
        };
        let mut telemetry = self.telemetry.clone();
        telemetry.otlp_endpoint = telemetry.otlp_endpoint.as_deref().map(mask_url);
        section(&mut out, &["telemetry"], &telemetry, &[&traces]);
        if self.hubs.is_empty() {
            out.push_str(
                "\n# hubs: none configured; every hub takes tokens, with no event handlers\n",
            );
        }
        for (name, hub) in &self.hubs {
            let mut hub: HubSettings = hub.clone();
            for h in &mut hub.event_handlers {
                h.url_template = mask_url(&h.url_template);
            }
            let note = format!(
                "{} event handler(s); anonymous clients {}",
                hub.event_handlers.len(),
                if hub.anonymous_connect {
                    "admitted"
                } else {
                    "refused"
                }
            );
            section(&mut out, &["hubs", name], &hub, &[&note]);
        }
        out
    }
}

/// Appends the section at `path` (`["hubs", "chat"]` is `[hubs.chat]`) with `value`'s
/// fields, after one comment line per note.
fn section(out: &mut String, path: &[&str], value: &impl Serialize, notes: &[&str]) {
    out.push('\n');
    for n in notes {
        out.push_str(&format!("# {n}\n"));
    }
    let body = toml::Value::try_from(value).unwrap_or_else(|_| toml::Table::new().into());
    out.push_str(&toml::to_string(&nest(path, body)).unwrap_or_default());
}

/// `{path[0]: {path[1]: … body}}`.
fn nest(path: &[&str], body: toml::Value) -> toml::Table {
    let mut table = toml::Table::new();
    match path {
        [] => {}
        [last] => {
            table.insert((*last).to_string(), body);
        }
        [first, rest @ ..] => {
            table.insert((*first).to_string(), nest(rest, body).into());
        }
    }
    table
}

/// A TOML string literal.
fn quoted(s: &str) -> String {
    toml::Value::from(s).to_string()
}

/// `url` with its password and query masked (a webhook's `?code=` is a credential).
fn mask_url(url: &str) -> String {
    let Ok(mut parsed) = url::Url::parse(url) else {
        return url.to_string();
    };
    if parsed.password().is_some() {
        let _ = parsed.set_password(Some("…"));
    }
    if parsed.query().is_some() {
        parsed.set_query(Some("…"));
    }
    // The parser escapes the mask and the `{hub}`/`{event}` placeholders; show them as
    // written.
    parsed
        .to_string()
        .replace("%E2%80%A6", "…")
        .replace("%7B", "{")
        .replace("%7D", "}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Cli, FileConfig};
    use clap::Parser;

    fn report(toml: &str) -> String {
        let file: FileConfig = toml::from_str(toml).expect("toml");
        Config::merge(&Cli::parse_from(["nerve"]), file)
            .expect("valid")
            .report()
    }

    #[test]
    fn every_section_is_shown_readably_without_secrets() {
        let r = report(
            "access_keys = [\"secret-key\"]\nredis_url = \"redis://:hunter2@r:6379/\"\n\
             [hubs.chat]\n[[hubs.chat.event_handlers]]\n\
             url_template = \"https://fn.example/api/{event}?code=fnkey\"\n\
             user_event_pattern = \"*\"\n",
        );
        // Every section is on the page (checked against the binary in the suite); the hub's
        // own tables are written with their full names.
        for header in ["[hubs.chat]", "[[hubs.chat.event_handlers]]"] {
            assert!(r.contains(header), "{header}: {r}");
        }
        for secret in ["secret-key", "hunter2", "fnkey"] {
            assert!(!r.contains(secret), "{secret}: {r}");
        }
        assert!(r.contains("https://fn.example/api/{event}?…"), "{r}");
        assert!(r.contains("# access_keys: 1 (not shown)"), "{r}");
        assert!(r.contains("max_frame_bytes = 1048576"), "{r}");
        assert!(r.contains("transport = \"memory\""), "{r}");
        assert!(r.contains("off: plain http and ws"), "{r}");
        assert!(!r.contains("Limits {"), "no debug structs: {r}");
        // What it prints reads back as the same settings.
        let printed: FileConfig = toml::from_str(&r).expect("the report is TOML");
        assert_eq!(printed.limits, crate::config::Limits::default());
    }
}
