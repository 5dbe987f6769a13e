//! Bus roles: which bus operations a caller may perform, read from the `role` claim of the
//! same HS256 client tokens the hub issues (`bus.submit.<capability>`, `bus.serve.<capability>`,
//! `bus.reply.<capability>`, `bus.context.<contextId>`, `bus.watch`, `bus.admin`).

use axum::http::{HeaderMap, Uri, header};

use crate::auth::normalize_audience;
use crate::node::Node;

/// A verb a bus role grants, optionally narrowed to one target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    /// Submit tasks to a capability (and cancel them).
    Submit,
    /// Serve a capability: register a card with that skill and receive its tasks.
    Serve,
    /// Answer input-required tasks of a capability (and cancel them).
    Reply,
    /// Publish a shared context.
    Context,
}

impl Verb {
    fn name(self) -> &'static str {
        match self {
            Verb::Submit => "submit",
            Verb::Serve => "serve",
            Verb::Reply => "reply",
            Verb::Context => "context",
        }
    }
}

/// The bus roles of one caller, and who it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants {
    roles: Vec<String>,
    /// The token's `sub`, if any.
    pub principal: Option<String>,
}

impl Grants {
    /// Grants from role strings; roles that are not `bus.*` are ignored.
    pub fn new(roles: &[String], principal: Option<String>) -> Self {
        Grants {
            roles: roles
                .iter()
                .filter(|r| r.starts_with("bus."))
                .cloned()
                .collect(),
            principal,
        }
    }

    /// Whether `bus.<verb>` or `bus.<verb>.<target>` (or `bus.admin`) is granted.
    pub fn allows(&self, verb: Verb, target: &str) -> bool {
        let name = verb.name();
        self.roles.iter().any(|r| {
            let Some(rest) = r.strip_prefix("bus.") else {
                return false;
            };
            rest == "admin"
                || rest == name
                || rest
                    .strip_prefix(name)
                    .and_then(|t| t.strip_prefix('.'))
                    .is_some_and(|t| t == target)
        })
    }

    /// Whether `bus.admin` is granted: everything, including putting dead letters back.
    pub fn is_admin(&self) -> bool {
        self.roles.iter().any(|r| r == "bus.admin")
    }

    /// Whether `bus.watch` (or `bus.admin`) is granted: read any task, chain and context.
    pub fn can_watch(&self) -> bool {
        self.roles
            .iter()
            .any(|r| r == "bus.watch" || r == "bus.admin")
    }
}

/// Why a bus token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// No token in the query (`access_token`) or the `Authorization: Bearer` header.
    #[error("an access token is required (access_token query parameter or Bearer header)")]
    Missing,
    /// The token did not verify.
    #[error("invalid access token: {0}")]
    Invalid(String),
}

/// The token of a request: `Authorization: Bearer …` or `?access_token=…`.
pub fn token_of(headers: &HeaderMap, uri: &Uri) -> Option<String> {
    if let Some(v) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        && let Some((scheme, t)) = v.split_once(' ')
        && scheme.eq_ignore_ascii_case("bearer")
    {
        return Some(t.trim().to_string());
    }
    let q = uri.query()?;
    url::form_urlencoded::parse(q.as_bytes())
        .find(|(k, _)| k == "access_token")
        .map(|(_, v)| v.into_owned())
}

/// Verifies a bus caller's token. Its audience must name this host (the `Host` header or the
/// public endpoint) with the path `/client/hubs/<bus hub>` (what every Web PubSub SDK mints for
/// the bus hub), `/bus/ws` or `/a2a`.
pub fn verify(app: &Node, headers: &HeaderMap, uri: &Uri) -> Result<Grants, TokenError> {
    let verified = verify_token(app, headers, uri);
    if let Err(e) = &verified {
        crate::auth::log_refusal(uri.path(), e);
    }
    verified
}

fn verify_token(app: &Node, headers: &HeaderMap, uri: &Uri) -> Result<Grants, TokenError> {
    let token = token_of(headers, uri).ok_or(TokenError::Missing)?;
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let bus_hub = app.config.bus.hub.to_ascii_lowercase();
    let claims = app
        .keys
        .verify(&token, |aud| {
            audience_ok(aud, &host, app.public_host(), &bus_hub)
        })
        .map_err(|e| TokenError::Invalid(e.to_string()))?;
    Ok(Grants::new(&claims.role, claims.sub))
}

fn audience_ok(aud: &str, host: &str, public_host: Option<&str>, bus_hub: &str) -> bool {
    let n = normalize_audience(aud);
    let rest = n.split_once("://").map(|(_, r)| r).unwrap_or(&n);
    let (aud_host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let host_ok = aud_host == host || public_host.is_some_and(|p| p == aud_host);
    let path_ok = path == "bus/ws" || path == "a2a" || path == format!("client/hubs/{bus_hub}");
    host_ok && path_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_narrow_to_targets() {
        let g = Grants::new(
            &[
                "bus.submit.triage".into(),
                "bus.serve".into(),
                "webpubsub.sendToGroup".into(),
            ],
            None,
        );
        assert!(g.allows(Verb::Submit, "triage"));
        assert!(!g.allows(Verb::Submit, "triage2"));
        assert!(!g.allows(Verb::Submit, "tria"));
        assert!(g.allows(Verb::Serve, "anything"));
        assert!(!g.allows(Verb::Reply, "triage"));
        assert!(!g.can_watch());
        let admin = Grants::new(&["bus.admin".into()], None);
        assert!(admin.allows(Verb::Reply, "x") && admin.can_watch());
    }

    #[test]
    fn audiences() {
        assert!(audience_ok(
            "http://h:1/client/hubs/bus",
            "h:1",
            None,
            "bus"
        ));
        assert!(audience_ok("ws://H:1/bus/ws", "h:1", None, "bus"));
        assert!(audience_ok(
            "https://pub.example/a2a",
            "h:1",
            Some("pub.example"),
            "bus"
        ));
        assert!(!audience_ok(
            "http://h:1/client/hubs/chat",
            "h:1",
            None,
            "bus"
        ));
        assert!(!audience_ok("http://evil:1/bus/ws", "h:1", None, "bus"));
    }
}
