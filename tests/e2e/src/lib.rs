//! Harness for multi-process cluster tests: `nerve` nodes sharing a real Redis, a REST caller
//! that signs like the server SDKs, and a WebSocket client that behaves like the official
//! reliable client (acks sequence ids, drops duplicates, resumes through any node), and a
//! proxy that cuts one node off from Redis.

mod client;
mod node;
mod proxy;

pub use client::{Client, Closed};
pub use node::{Node, nerve_binary};
pub use proxy::Proxy;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

/// The access key every test node uses.
pub const KEY: &str = "e2e-cluster-test-key-0123456789";
/// The public endpoint every node shares, so one client token works on all of them.
pub const PUBLIC: &str = "http://nerve.test";
/// The hub the tests use.
pub const HUB: &str = "chat";
/// The reliable JSON subprotocol.
pub const RELIABLE: &str = "json.reliable.webpubsub.azure.v1";
/// The plain JSON subprotocol.
pub const JSON: &str = "json.webpubsub.azure.v1";
/// How long a test waits for any one condition.
pub const WAIT: Duration = Duration::from_secs(20);

#[derive(Serialize)]
struct Claims<'a> {
    aud: &'a str,
    exp: u64,
    iat: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    sub: Option<&'a str>,
    role: Vec<&'a str>,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

fn sign(aud: &str, sub: Option<&str>, role: Vec<&str>) -> String {
    let claims = Claims {
        aud,
        exp: now() + 3600,
        iat: now(),
        sub,
        role,
    };
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(KEY.as_bytes()),
    )
    .unwrap_or_default()
}

/// A token for audience `aud` with `roles`, signed with [`KEY`].
pub fn token(aud: &str, roles: &[&str]) -> String {
    sign(aud, None, roles.to_vec())
}

/// A client token for [`HUB`] valid on every node, allowed to join and send anywhere.
pub fn client_token(user: Option<&str>) -> String {
    let aud = format!("{PUBLIC}/client/hubs/{HUB}");
    sign(
        &aud,
        user,
        vec!["webpubsub.joinLeaveGroup", "webpubsub.sendToGroup"],
    )
}

/// An HTTP client that gives up on a node after a few seconds (a draining node may accept a
/// TCP connection it never answers).
fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()
        .unwrap_or_default()
}

/// A REST call's answer.
#[derive(Debug)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// Body text.
    pub body: String,
}

/// Calls `method /api/hubs/chat{path}` on the node at `port`, signed like the server SDKs.
pub async fn rest(port: u16, method: &str, path: &str, body: Option<&str>) -> Answer {
    let url = format!("http://127.0.0.1:{port}/api/hubs/{HUB}{path}");
    let sep = if url.contains('?') { '&' } else { '?' };
    let token = sign(&url, None, Vec::new());
    let full = format!("{url}{sep}api-version=2024-01-01");
    let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut req = http().request(m, full).bearer_auth(token);
    if let Some(b) = body {
        req = req.header("content-type", "text/plain").body(b.to_string());
    }
    match req.send().await {
        Ok(r) => Answer {
            status: r.status().as_u16(),
            body: r.text().await.unwrap_or_default(),
        },
        Err(e) => Answer {
            status: 0,
            body: e.to_string(),
        },
    }
}

/// Sends a JSON body with `POST`.
pub async fn rest_json(port: u16, path: &str, body: &serde_json::Value) -> Answer {
    let url = format!("http://127.0.0.1:{port}/api/hubs/{HUB}{path}");
    let token = sign(&url, None, Vec::new());
    let r = http()
        .post(format!("{url}?api-version=2024-01-01"))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await;
    match r {
        Ok(r) => Answer {
            status: r.status().as_u16(),
            body: r.text().await.unwrap_or_default(),
        },
        Err(e) => Answer {
            status: 0,
            body: e.to_string(),
        },
    }
}

/// `GET /readyz` of a node: `Some(true)` ready, `Some(false)` not ready, `None` unreachable.
pub async fn ready(port: u16) -> Option<bool> {
    let r = http()
        .get(format!("http://127.0.0.1:{port}/readyz"))
        .send()
        .await
        .ok()?;
    Some(r.status().is_success())
}

/// A metric's value (summed over label sets) from a node's `/metrics`.
pub async fn metric(port: u16, name: &str) -> f64 {
    let Ok(r) = reqwest::get(format!("http://127.0.0.1:{port}/metrics")).await else {
        return 0.0;
    };
    let text = r.text().await.unwrap_or_default();
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
