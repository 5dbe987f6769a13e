//! Tokens from a connection string, so a program reaches a hub without JWT code: client
//! tokens (and URLs) with a user, roles and groups, and REST tokens whose `aud` is the URL of
//! the call, signed HS256 with the access key as the hub and the Azure SDKs sign.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use hmac::{Hmac, Mac};
pub use nerve_protocol::access::{ClientProtocol, ConnectionString};
use serde_json::{Map, Value, json};

use crate::error::{ClientError, Result};

/// The environment variable the examples read the connection string from.
pub const CONNECTION_STRING_ENV: &str = "NERVE_CONNECTION_STRING";

/// The connection string in `NERVE_CONNECTION_STRING`, as the hub printed it.
pub fn connection_string_from_env() -> Result<ConnectionString> {
    let text = std::env::var(CONNECTION_STRING_ENV).map_err(|_| {
        ClientError::ConnectionString(format!(
            "set {CONNECTION_STRING_ENV} to the connection string the hub printed at start \
             (also on its start page, http://127.0.0.1:8080/)"
        ))
    })?;
    ConnectionString::parse(&text).map_err(ClientError::ConnectionString)
}

/// A client token to sign: `ClientToken::new(&cs, "chat").user("alice").role(..).url()`.
#[derive(Debug, Clone)]
pub struct ClientToken {
    endpoint: String,
    key: String,
    hub: String,
    user: Option<String>,
    roles: Vec<String>,
    groups: Vec<String>,
    minutes: u64,
    protocol: ClientProtocol,
}

impl ClientToken {
    /// A token for `hub` of the hub `cs` names, valid for an hour, with no user or roles.
    pub fn new(cs: &ConnectionString, hub: &str) -> Self {
        ClientToken {
            endpoint: cs.endpoint.clone(),
            key: cs.access_key.clone(),
            hub: hub.to_string(),
            user: None,
            roles: Vec::new(),
            groups: Vec::new(),
            minutes: 60,
            protocol: ClientProtocol::Default,
        }
    }

    /// The user id (`sub`).
    pub fn user(mut self, user: &str) -> Self {
        self.user = Some(user.to_string());
        self
    }

    /// Adds a role (`webpubsub.sendToGroup`, `bus.serve.<capability>`, …).
    pub fn role(mut self, role: &str) -> Self {
        self.roles.push(role.to_string());
        self
    }

    /// Adds roles.
    pub fn roles<'a>(mut self, roles: impl IntoIterator<Item = &'a str>) -> Self {
        self.roles.extend(roles.into_iter().map(str::to_string));
        self
    }

    /// Adds a group joined on connect.
    pub fn group(mut self, group: &str) -> Self {
        self.groups.push(group.to_string());
        self
    }

    /// The lifetime in minutes (default 60).
    pub fn minutes(mut self, minutes: u64) -> Self {
        self.minutes = minutes;
        self
    }

    /// The client protocol (default: the Web PubSub protocols this hub serves).
    pub fn protocol(mut self, protocol: ClientProtocol) -> Self {
        self.protocol = protocol;
        self
    }

    /// The signed token.
    pub fn token(&self) -> String {
        let now = now_secs();
        let mut claims = Map::new();
        let aud = format!("{}/{}", self.endpoint, self.protocol.path(&self.hub));
        claims.insert("aud".into(), Value::from(aud));
        claims.insert("iat".into(), Value::from(now));
        claims.insert("exp".into(), Value::from(now + self.minutes * 60));
        if let Some(u) = &self.user {
            claims.insert("sub".into(), Value::from(u.as_str()));
        }
        if !self.roles.is_empty() {
            claims.insert("role".into(), Value::from(self.roles.clone()));
        }
        if !self.groups.is_empty() {
            claims.insert("webpubsub.group".into(), Value::from(self.groups.clone()));
        }
        sign(&Value::Object(claims), &self.key)
    }

    /// `ws(s)://…/client/hubs/<hub>?access_token=…`.
    pub fn url(&self) -> String {
        let ws = self
            .endpoint
            .replacen("https://", "wss://", 1)
            .replacen("http://", "ws://", 1);
        let path = self.protocol.path(&self.hub);
        format!("{ws}/{path}?access_token={}", self.token())
    }
}

/// A bearer token for the REST call at `path` (`/api/hubs/chat/:send`) or full URL, valid for
/// `minutes`.
pub fn rest_token(cs: &ConnectionString, path: &str, minutes: u64) -> String {
    let path = path.split('?').next().unwrap_or_default();
    let aud = if path.starts_with("http://") || path.starts_with("https://") {
        path.to_string()
    } else {
        format!("{}/{}", cs.endpoint, path.trim_start_matches('/'))
    };
    let now = now_secs();
    sign(
        &json!({"aud": aud, "iat": now, "exp": now + minutes * 60}),
        &cs.access_key,
    )
}

/// An HS256 JWT of `claims`, signed with the UTF-8 bytes of `key`.
fn sign(claims: &Value, key: &str) -> String {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let head = b64.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let body = b64.encode(claims.to_string());
    let signing_input = format!("{head}.{body}");
    // HMAC accepts keys of any length, so this cannot fail.
    let Ok(mut mac) = Hmac::<sha2::Sha256>::new_from_slice(key.as_bytes()) else {
        return String::new();
    };
    mac.update(signing_input.as_bytes());
    let signature = b64.encode(mac.finalize().into_bytes());
    format!("{signing_input}.{signature}")
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_carry_what_was_asked_and_verify_with_the_key() {
        let cs = ConnectionString::parse("Endpoint=https://h:8443;AccessKey=k;").unwrap();
        let t = ClientToken::new(&cs, "chat")
            .user("alice")
            .roles(["a", "b"])
            .group("g")
            .minutes(5);
        let url = t.url();
        assert!(
            url.starts_with("wss://h:8443/client/hubs/chat?access_token="),
            "{url}"
        );
        let token = t.token();
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
        validation.set_audience(&["https://h:8443/client/hubs/chat"]);
        let claims = jsonwebtoken::decode::<Value>(
            &token,
            &jsonwebtoken::DecodingKey::from_secret(b"k"),
            &validation,
        )
        .unwrap()
        .claims;
        assert_eq!(claims["sub"], "alice");
        assert_eq!(claims["role"], json!(["a", "b"]));
        assert_eq!(claims["webpubsub.group"], json!(["g"]));
        let rest = rest_token(&cs, "/api/hubs/chat/:send?api-version=1", 1);
        validation.set_audience(&["https://h:8443/api/hubs/chat/:send"]);
        assert!(
            jsonwebtoken::decode::<Value>(
                &rest,
                &jsonwebtoken::DecodingKey::from_secret(b"k"),
                &validation
            )
            .is_ok()
        );
    }
}
