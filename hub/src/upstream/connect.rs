//! The blocking `connect` event: the request body the hub sends (claims, query, headers,
//! offered subprotocols) and what the upstream's reply may change (user id, groups, roles,
//! subprotocol, connection state), or its refusal.

use std::collections::BTreeMap;

use axum::http::{HeaderMap, StatusCode, Uri};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::auth::Claims;

/// Body of the `connect` event.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ConnectRequest {
    /// Token claims, each as a list of strings.
    pub claims: BTreeMap<String, Vec<String>>,
    /// Query parameters of the upgrade request (without `access_token`).
    pub query: BTreeMap<String, Vec<String>>,
    /// Headers of the upgrade request (without `Authorization`).
    pub headers: BTreeMap<String, Vec<String>>,
    /// Subprotocols the client offered.
    pub subprotocols: Vec<String>,
    /// Client certificates (never any: the hub does not terminate mutual TLS).
    pub client_certificates: Vec<Value>,
    /// What an MQTT client's CONNECT said (MQTT connections only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mqtt: Option<MqttConnectProperties>,
}

/// The `mqtt` object of an MQTT connection's `connect` event, as Azure sends it.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct MqttConnectProperties {
    /// The CONNECT's protocol level: 4 (3.1.1) or 5 (5.0).
    pub protocol_version: u8,
    /// The user name, if the client sent one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// The password, if the client sent one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// MQTT 5 user properties of the CONNECT.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub user_properties: Vec<MqttUserProperty>,
}

/// One MQTT 5 user property.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct MqttUserProperty {
    /// Its name.
    pub name: String,
    /// Its value.
    pub value: String,
}

impl ConnectRequest {
    /// Builds the body from the upgrade request.
    pub fn new(
        claims: Option<&Claims>,
        uri: &Uri,
        headers: &HeaderMap,
        subprotocols: Vec<String>,
    ) -> Self {
        let mut req = ConnectRequest {
            subprotocols,
            ..Default::default()
        };
        if let Some(Value::Object(map)) = claims.and_then(|c| serde_json::to_value(c).ok()) {
            for (k, v) in map {
                let values = match v {
                    Value::Null => continue,
                    Value::Array(items) => items.into_iter().map(claim_string).collect(),
                    other => vec![claim_string(other)],
                };
                req.claims.insert(k, values);
            }
        }
        if let Some(q) = uri.query() {
            for (k, v) in url::form_urlencoded::parse(q.as_bytes()) {
                if k == "access_token" {
                    continue;
                }
                req.query
                    .entry(k.into_owned())
                    .or_default()
                    .push(v.into_owned());
            }
        }
        for (name, value) in headers {
            if name == axum::http::header::AUTHORIZATION {
                continue;
            }
            if let Ok(v) = value.to_str() {
                req.headers
                    .entry(name.as_str().to_string())
                    .or_default()
                    .push(v.to_string());
            }
        }
        req
    }
}

fn claim_string(v: Value) -> String {
    match v {
        Value::String(s) => s,
        other => other.to_string(),
    }
}

/// What a 200 reply to `connect` may set.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", default)]
pub struct ConnectResponse {
    /// Overrides the token's user id.
    pub user_id: Option<String>,
    /// Groups joined at once.
    pub groups: Vec<String>,
    /// Roles added to the token's.
    pub roles: Vec<String>,
    /// The subprotocol echoed in the handshake (one the client offered).
    pub subprotocol: Option<String>,
}

/// The upstream accepted the connection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectOutcome {
    /// The reply body (empty for 204).
    pub response: ConnectResponse,
    /// `ce-connectionState` from the reply.
    pub state: Option<String>,
}

/// The upstream refused the connection (or could not be asked); the upgrade fails with this.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("connect refused ({status}): {message}")]
pub struct ConnectRefused {
    /// HTTP status for the client's upgrade.
    pub status: StatusCode,
    /// Why, for the client.
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_body_shape() {
        let claims = Claims {
            sub: Some("u".into()),
            role: vec!["r1".into(), "r2".into()],
            exp: 5,
            other: [("custom".to_string(), serde_json::json!(7))].into(),
            ..Default::default()
        };
        let uri: Uri = "/client/hubs/h?access_token=x&a=1&a=2".parse().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("authorization", "Bearer x".parse().unwrap());
        headers.insert("x-k", "v".parse().unwrap());
        let r = ConnectRequest::new(Some(&claims), &uri, &headers, vec!["p".into()]);
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["claims"]["sub"], serde_json::json!(["u"]));
        assert_eq!(v["claims"]["role"], serde_json::json!(["r1", "r2"]));
        assert_eq!(v["claims"]["exp"], serde_json::json!(["5"]));
        assert_eq!(v["claims"]["custom"], serde_json::json!(["7"]));
        assert_eq!(v["query"], serde_json::json!({"a": ["1", "2"]}));
        assert_eq!(v["headers"], serde_json::json!({"x-k": ["v"]}));
        assert_eq!(v["subprotocols"], serde_json::json!(["p"]));
        assert_eq!(v["clientCertificates"], serde_json::json!([]));
    }
}
