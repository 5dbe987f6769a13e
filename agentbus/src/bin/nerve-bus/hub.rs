//! The bus of a running `nerve` hub, through its operations API (`POST /bus/api/{op}`): how
//! `nerve-bus` inspects the hub's own bus, the in-memory one included, without Redis.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use nerve_protocol::access::ConnectionString;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// Lifetime of the token minted from a connection string, in seconds.
const TOKEN_SECS: u64 = 3600;

/// A hub's operations API, with the token every call carries.
pub struct HubApi {
    endpoint: String,
    token: String,
    http: reqwest::Client,
}

impl HubApi {
    /// The API at `endpoint` with `token`.
    pub fn new(endpoint: &str, token: String) -> Self {
        HubApi {
            endpoint: endpoint.trim_end_matches('/').to_string(),
            token,
            http: reqwest::Client::new(),
        }
    }

    /// The API of the hub `cs` names, with a `bus.admin` token signed by its key.
    pub fn from_connection_string(cs: &ConnectionString) -> Result<Self> {
        Ok(Self::new(&cs.endpoint, admin_token(cs)?))
    }

    /// Runs operation `op` with `data`; the error carries the hub's name and message.
    pub async fn call<T: DeserializeOwned>(&self, op: &str, data: Value) -> Result<T> {
        let url = format!("{}/bus/api/{op}", self.endpoint);
        let r = self
            .http
            .post(&url)
            .bearer_auth(&self.token)
            .headers(trace_headers())
            .json(&data)
            .send()
            .await
            .with_context(|| format!("cannot reach the hub at {}", self.endpoint))?;
        let status = r.status();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            let name = body["name"].as_str().unwrap_or("Error");
            let message = body["message"].as_str().unwrap_or_default();
            bail!("{op}: {name} (HTTP {}): {message}", status.as_u16());
        }
        serde_json::from_value(body).with_context(|| format!("{op}: unexpected answer"))
    }

    /// `call` for a field of the answer.
    pub async fn field<T: DeserializeOwned>(&self, op: &str, data: Value, key: &str) -> Result<T> {
        let mut v: Value = self.call(op, data).await?;
        serde_json::from_value(v[key].take()).with_context(|| format!("{op}: no '{key}'"))
    }
}

/// A bus token for the operator: `bus.admin` (read everything, submit, answer, redrive),
/// valid for an hour, with the `/bus/ws` audience every bus endpoint accepts.
fn admin_token(cs: &ConnectionString) -> Result<String> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let claims = json!({
        "aud": format!("{}/bus/ws", cs.endpoint),
        "sub": "nerve-bus",
        "role": ["bus.admin"],
        "iat": now,
        "exp": now + TOKEN_SECS,
    });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(cs.access_key.as_bytes()),
    )
    .context("sign the bus token")
}

/// The current span's `traceparent` as a header, so the hub's span joins the caller's trace.
fn trace_headers() -> reqwest::header::HeaderMap {
    let mut h = reqwest::header::HeaderMap::new();
    if let Some(tp) = super::telemetry::current_traceparent()
        && let Ok(v) = reqwest::header::HeaderValue::from_str(&tp)
    {
        h.insert("traceparent", v);
    }
    h
}
