//! CloudEvents binary-mode request headers for upstream calls, and the `ce-signature` that
//! proves a request came from a holder of the access keys. Pure code, tested alone.

use std::sync::Arc;

use hmac::{Hmac, Mac};
use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
use sha2::Sha256;

use super::settings::EventKind;

/// Largest `ce-connectionState` the hub stores and sends back, in bytes of the header value.
pub const MAX_STATE_BYTES: usize = 16 * 1024;

/// Characters escaped when a hub or event name is put into a URL path.
const PATH_SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'\\')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');

/// Who an event is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventContext {
    /// Hub name.
    pub hub: Arc<str>,
    /// Connection id.
    pub connection_id: Arc<str>,
    /// User id, if any.
    pub user_id: Option<Arc<str>>,
    /// The negotiated subprotocol, if any.
    pub subprotocol: Option<Arc<str>>,
}

/// Fills `{hub}` and `{event}` of a URL template (each escaped as one path segment).
pub fn resolve_url(template: &str, hub: &str, event: &str) -> String {
    template
        .replace("{hub}", &utf8_percent_encode(hub, PATH_SEGMENT).to_string())
        .replace(
            "{event}",
            &utf8_percent_encode(event, PATH_SEGMENT).to_string(),
        )
}

/// `sha256=<hex>` for every key, comma-separated: hex(HMAC-SHA256(key, connectionId)).
pub fn signature(keys: &[String], connection_id: &str) -> String {
    keys.iter()
        .map(|k| {
            // HMAC accepts keys of any length.
            let mut mac = match Hmac::<Sha256>::new_from_slice(k.as_bytes()) {
                Ok(m) => m,
                Err(_) => return String::new(),
            };
            mac.update(connection_id.as_bytes());
            let digest = mac.finalize().into_bytes();
            let mut hex = String::with_capacity(7 + 64);
            hex.push_str("sha256=");
            for b in digest {
                hex.push_str(&format!("{b:02x}"));
            }
            hex
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Whether `header` (as a verifier receives it) carries a valid signature for one of `keys`.
#[cfg(test)]
pub fn verify_signature(header: &str, keys: &[String], connection_id: &str) -> bool {
    let expected = signature(keys, connection_id).to_ascii_lowercase();
    let expected: Vec<&str> = expected.split(',').collect();
    header
        .split(',')
        .map(|s| s.trim().to_ascii_lowercase())
        .any(|s| expected.contains(&s.as_str()))
}

/// Every CloudEvents header of an event POST (Content-Type excluded).
pub fn headers(
    event: EventKind<'_>,
    ctx: &EventContext,
    origin: &str,
    keys: &[String],
    state: Option<&str>,
) -> Vec<(&'static str, String)> {
    let mut h = vec![
        ("webhook-request-origin", origin.to_string()),
        ("ce-awpsversion", "1.0".to_string()),
        ("ce-specversion", "1.0".to_string()),
        ("ce-id", uuid::Uuid::new_v4().to_string()),
        ("ce-time", now_rfc3339()),
        ("ce-type", event.ce_type()),
        (
            "ce-source",
            format!("/hubs/{}/client/{}", ctx.hub, ctx.connection_id),
        ),
        ("ce-hub", ctx.hub.to_string()),
        ("ce-connectionid", ctx.connection_id.to_string()),
        ("ce-eventname", event.name().to_string()),
        ("ce-signature", signature(keys, &ctx.connection_id)),
    ];
    if let Some(u) = &ctx.user_id {
        h.push(("ce-userid", u.to_string()));
    }
    if let Some(p) = &ctx.subprotocol {
        h.push(("ce-subprotocol", p.to_string()));
    }
    if let Some(s) = state.filter(|s| !s.is_empty()) {
        h.push(("ce-connectionstate", s.to_string()));
    }
    h
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> EventContext {
        EventContext {
            hub: Arc::from("chat"),
            connection_id: Arc::from("c1"),
            user_id: Some(Arc::from("u1")),
            subprotocol: None,
        }
    }

    #[test]
    fn signature_has_one_entry_per_key_and_verifies() {
        let keys = vec!["k1".to_string(), "k2".to_string()];
        let sig = signature(&keys, "c1");
        let parts: Vec<&str> = sig.split(',').collect();
        assert_eq!(parts.len(), 2);
        assert!(
            parts
                .iter()
                .all(|p| p.starts_with("sha256=") && p.len() == 71)
        );
        // Known answer: HMAC-SHA256("key", "The quick brown fox jumps over the lazy dog").
        assert_eq!(
            signature(
                &["key".into()],
                "The quick brown fox jumps over the lazy dog"
            ),
            "sha256=f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
        );
        assert!(verify_signature(
            &sig.to_uppercase().replace("SHA256", "sha256"),
            &["k2".into()],
            "c1"
        ));
        assert!(!verify_signature(&sig, &["k3".into()], "c1"));
    }

    #[test]
    fn headers_and_urls() {
        let h = headers(
            EventKind::User("chat"),
            &ctx(),
            "hub.example",
            &["k".into()],
            Some("e30="),
        );
        let get = |k: &str| h.iter().find(|(n, _)| *n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("ce-type"), Some("azure.webpubsub.user.chat"));
        assert_eq!(get("ce-awpsversion"), Some("1.0"));
        assert_eq!(get("ce-source"), Some("/hubs/chat/client/c1"));
        assert_eq!(get("ce-userid"), Some("u1"));
        assert_eq!(get("ce-connectionstate"), Some("e30="));
        assert_eq!(get("ce-subprotocol"), None);
        assert!(get("ce-time").is_some_and(|t| t.ends_with('Z')));
        assert_eq!(
            resolve_url("http://h/api/{hub}/{event}", "chat", "a b/c"),
            "http://h/api/chat/a%20b%2Fc"
        );
    }
}
