//! The demo pages (`/demo/chat`, `/demo/dashboard`, `/demo/tasks`), embedded in the binary with
//! no build step, plus what they need: a token endpoint that only exists when `[demo]` allows it
//! and only answers callers on this machine, and a small JSON stats feed for the dashboard.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use axum::Json;
use axum::Router as HttpRouter;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Value, json};

use super::BridgeCell;
use crate::node::Node;

/// Demo tokens live this long.
const TOKEN_TTL_SECS: u64 = 3600;
/// Tasks the stats feed looks at.
const STATS_TASKS: usize = 500;

/// The pages and their helpers.
pub fn routes() -> HttpRouter<BridgeCell> {
    HttpRouter::new()
        // The pages' index is the landing page now.
        .route("/demo", get(|| async { Redirect::permanent("/") }))
        .route("/demo/", get(|| async { Redirect::permanent("/") }))
        .route("/demo/chat", get(|| page(CHAT)))
        .route("/demo/dashboard", get(|| page(DASHBOARD)))
        .route("/demo/tasks", get(|| page(TASKS)))
        .route(
            "/demo/assets/nerve.js",
            get(|| asset(NERVE_JS, "text/javascript")),
        )
        .route(
            "/demo/assets/style.css",
            get(|| asset(STYLE_CSS, "text/css")),
        )
        .route("/demo/token", get(token))
        .route("/demo/stats.json", get(stats))
}

const CHAT: &str = include_str!("../../pages/chat.html");
const DASHBOARD: &str = include_str!("../../pages/dashboard.html");
const TASKS: &str = include_str!("../../pages/tasks.html");
const NERVE_JS: &str = include_str!("../../pages/nerve.js");
/// The pages' shared style sheet (the console serves it too).
pub(crate) const STYLE_CSS: &str = include_str!("../../pages/style.css");

async fn page(html: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        html,
    )
        .into_response()
}

/// A static page asset: revalidated, never stale after an upgrade.
pub(crate) async fn asset(body: &'static str, ty: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, ty),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// `?hub=&user=` of the token endpoint.
#[derive(Deserialize)]
struct TokenQuery {
    hub: Option<String>,
    user: Option<String>,
}

/// `GET /demo/token?hub=chat&user=alice`: a client token for the demo pages. Off unless the
/// configuration enables it (default: on for a loopback listener), and even then only for
/// callers on this machine.
async fn token(
    State(cell): State<BridgeCell>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Query(q): Query<TokenQuery>,
) -> Response {
    let app = &cell.app;
    if let Some(why) = demo_refusal(app, peer, &headers) {
        return (StatusCode::NOT_FOUND, why).into_response();
    }
    let hub = q.hub.unwrap_or_else(|| "chat".into());
    if !crate::names::valid_hub_name(&hub) {
        return (StatusCode::BAD_REQUEST, "invalid hub name").into_response();
    }
    let user = q
        .user
        .filter(|u| !u.is_empty() && u.len() <= 64)
        .unwrap_or_else(|| "guest".into());
    let mut roles = vec![
        crate::registry::roles::JOIN_LEAVE.to_string(),
        crate::registry::roles::SEND_TO_GROUP.to_string(),
    ];
    if hub.eq_ignore_ascii_case(&app.config.bus.hub) {
        roles.extend(["bus.watch", "bus.reply", "bus.submit"].map(String::from));
    }
    let base = app.endpoint_for(&headers);
    let aud = format!("{base}/client/hubs/{hub}");
    let token = app
        .keys
        .client_token(&aud, Some(&user), &roles, &[], TOKEN_TTL_SECS);
    let ws = crate::config::ws_endpoint(&base);
    Json(json!({
        "token": token,
        "hub": hub,
        "user": user,
        "roles": roles,
        "url": format!("{ws}/client/hubs/{hub}?access_token={token}"),
    }))
    .into_response()
}

/// Why `/demo/token` refuses this caller, in words a person can act on; `None` if it may
/// have a token.
pub fn demo_refusal(app: &Node, peer: SocketAddr, headers: &HeaderMap) -> Option<String> {
    if !app.config.demo_tokens {
        let listen = app.config.listen;
        return Some(if listen.ip().is_loopback() {
            "the demo pages are off: [demo] enabled = false in the configuration".to_string()
        } else {
            format!(
                "the demo pages are off because the hub listens on {listen}, beyond this \
                 machine: their token endpoint would give anyone who reaches it every role. \
                 Run the hub with --listen 127.0.0.1:{} to use them",
                listen.port()
            )
        });
    }
    if !crate::tls::from_this_machine(peer.ip(), headers) {
        return Some(
            "demo tokens are only given to browsers on the hub's own machine that open it as \
             127.0.0.1 or localhost"
                .to_string(),
        );
    }
    None
}

/// `GET /demo/stats.json`: what the dashboard shows. Open when demo tokens are on; otherwise it
/// needs a bus token with `bus.watch`.
async fn stats(State(cell): State<BridgeCell>, headers: HeaderMap, uri: Uri) -> Response {
    let app = &cell.app;
    if !app.config.demo_tokens {
        match super::grants::verify(app, &headers, &uri) {
            Ok(g) if g.can_watch() => {}
            _ => return (StatusCode::UNAUTHORIZED, "needs a bus.watch token").into_response(),
        }
    }
    let m = crate::metrics::global();
    let hubs: Vec<Value> = app
        .registry
        .hubs()
        .iter()
        .map(|h| json!({"hub": h.name.as_ref(), "connections": h.connection_count(), "groups": h.group_count()}))
        .collect();
    let mut body = json!({
        "connections": app.registry.connection_count(),
        "hubs": hubs,
        "messagesOut": m.messages_out.get(),
        "ready": app.is_ready(),
        "redis": {"configured": !app.config.redis_urls.is_empty(), "up": app.is_ready(),
                   "busTransport": format!("{:?}", app.config.bus.transport).to_lowercase()},
    });
    if let Ok(bridge) = cell.get() {
        body["bus"] = bus_stats(&bridge.bus)
            .await
            .unwrap_or_else(|e| json!({"error": e}));
    }
    Json(body).into_response()
}

async fn bus_stats(bus: &nerve_agentbus::Bus) -> Result<Value, String> {
    let t = bus.transport();
    let caps = t.capabilities().await.map_err(|e| e.to_string())?;
    let tasks = bus
        .recent_tasks(STATS_TASKS)
        .await
        .map_err(|e| e.to_string())?;
    let agents = t.agents().await.map_err(|e| e.to_string())?;
    let mut by_state: BTreeMap<String, u64> = BTreeMap::new();
    let mut queued: BTreeMap<String, u64> = BTreeMap::new();
    for r in &tasks {
        *by_state.entry(r.state().to_string()).or_default() += 1;
        if r.state() == nerve_agentbus::TaskState::Submitted {
            *queued.entry(r.capability.clone()).or_default() += 1;
        }
    }
    let mut queues = Vec::new();
    for (cap, _) in &caps {
        let dead = bus
            .dead_letters(cap)
            .await
            .map_err(|e| e.to_string())?
            .len();
        let serving = agents.iter().filter(|a| a.serves(cap)).count();
        queues.push(
            json!({"capability": cap, "queued": queued.get(cap).copied().unwrap_or(0),
                           "deadLetters": dead, "agents": serving}),
        );
    }
    Ok(
        json!({"queues": queues, "tasksByState": by_state, "agents": agents.len(),
              "recentTasks": tasks.len()}),
    )
}
