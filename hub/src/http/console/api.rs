//! The console's read API, `GET /console/api/…`, each call authorized like a REST call (a
//! Bearer token signed with an access key whose audience is the request URL): this node's
//! overview and per-second samples, its hubs, and their connections, users and groups as this
//! node's registry holds them. Answers are JSON; errors are `{code, message}`.

use std::collections::BTreeSet;
use std::net::SocketAddr;

use axum::Json;
use axum::Router as HttpRouter;
use axum::extract::{ConnectInfo, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::Console;
use crate::http::error::ApiError;
use crate::registry::Hub;

/// Most rows a listing answers with.
const MAX_ROWS: usize = 1000;
/// Rows a listing answers with when the caller names no `limit`.
const DEFAULT_ROWS: usize = 200;
/// Longest search text.
const MAX_SEARCH: usize = 256;

pub(super) fn routes() -> HttpRouter<Console> {
    HttpRouter::new()
        .route("/console/api/overview", get(overview))
        .route("/console/api/metrics", get(series))
        .route("/console/api/hubs", get(hubs))
        .route("/console/api/hubs/{hub}/connections", get(connections))
        .route("/console/api/hubs/{hub}/users", get(users))
        .route("/console/api/hubs/{hub}/groups", get(groups))
        .route("/console/api/trace", get(super::stream::trace))
}

/// A caller whose token verified (the extractor answers 401 or 429 otherwise).
pub(super) struct Operator;

impl FromRequestParts<Console> for Operator {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, console: &Console) -> Result<Self, Response> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(a)| *a);
        match crate::http::rest::refusal(&console.node, peer, &parts.headers, &parts.uri) {
            Some(refused) => Err(refused),
            None => Ok(Operator),
        }
    }
}

/// `GET /console/api/overview`
async fn overview(_: Operator, State(c): State<Console>) -> Response {
    let node = &c.node;
    let latest = c.samples.last(1).pop();
    Json(json!({
        "node": node.config.node_id,
        "version": env!("CARGO_PKG_VERSION"),
        "cluster": {
            "redis": !node.config.redis_urls.is_empty(),
            "redisUp": node.broker.is_ready(),
            "busTransport": format!("{:?}", node.config.bus.transport).to_lowercase(),
        },
        "busHub": node.config.bus.hub,
        "traceWatchers": node.trace.watchers(),
        "payloadsAllowed": node.trace.payloads_allowed(),
        "historySeconds": c.samples.capacity(),
        "latest": latest,
        "hubs": hub_rows(node),
        "nodes": cluster_nodes(node),
    }))
    .into_response()
}

/// Every live node's latest sample as the cluster shares them (empty on a single node):
/// `[{node, sample}]`.
fn cluster_nodes(node: &crate::node::Node) -> Vec<Value> {
    node.broker
        .node_stats()
        .into_iter()
        .filter_map(|(id, json)| {
            let sample: Value = serde_json::from_str(&json).ok()?;
            Some(json!({"node": id, "sample": sample}))
        })
        .collect()
}

#[derive(Deserialize)]
struct SeriesQuery {
    seconds: Option<usize>,
}

/// `GET /console/api/metrics?seconds=N`: the last N per-second samples (default all kept).
async fn series(
    _: Operator,
    State(c): State<Console>,
    q: Result<Query<SeriesQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(q)) = q else {
        return ApiError::bad_request("'seconds' must be a whole number").into_response();
    };
    let seconds = q.seconds.unwrap_or(c.samples.capacity());
    if seconds == 0 || seconds > c.samples.capacity() {
        return ApiError::bad_request(format!(
            "'seconds' must be 1 to {}, the seconds this node keeps",
            c.samples.capacity()
        ))
        .into_response();
    }
    Json(json!({
        "node": c.node.config.node_id,
        "intervalMs": 1000,
        "samples": c.samples.last(seconds),
    }))
    .into_response()
}

fn hub_rows(node: &crate::node::Node) -> Vec<Value> {
    let mut hubs: Vec<Value> = node
        .registry
        .hubs()
        .iter()
        .map(|h| {
            json!({"hub": h.name.as_ref(), "connections": h.connection_count(),
                   "groups": h.group_count(), "users": h.user_count()})
        })
        .collect();
    hubs.sort_by(|a, b| a["hub"].as_str().cmp(&b["hub"].as_str()));
    hubs
}

/// `GET /console/api/hubs`
async fn hubs(_: Operator, State(c): State<Console>) -> Response {
    Json(json!({"node": c.node.config.node_id, "hubs": hub_rows(&c.node)})).into_response()
}

/// `?search=&limit=` of the listings.
#[derive(Deserialize)]
struct ListQuery {
    search: Option<String>,
    limit: Option<usize>,
}

/// A listing's hub (from the path) and its validated `?search=&limit=`; the extractor answers
/// 400 with a JSON error otherwise.
struct Listing {
    hub: String,
    search: String,
    limit: usize,
}

impl FromRequestParts<Console> for Listing {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, console: &Console) -> Result<Self, Response> {
        let Path(hub) = Path::<String>::from_request_parts(parts, console)
            .await
            .map_err(IntoResponse::into_response)?;
        let q = Query::<ListQuery>::from_request_parts(parts, console).await;
        Listing::new(hub, q).map_err(IntoResponse::into_response)
    }
}

impl Listing {
    fn new(
        hub: String,
        q: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
    ) -> Result<Listing, ApiError> {
        if !crate::names::valid_hub_name(&hub) {
            return Err(ApiError::bad_request(format!("invalid hub name '{hub}'")));
        }
        let Query(q) = q.map_err(|_| ApiError::bad_request("'limit' must be a whole number"))?;
        let limit = q.limit.unwrap_or(DEFAULT_ROWS);
        if limit == 0 || limit > MAX_ROWS {
            return Err(ApiError::bad_request(format!(
                "'limit' must be 1 to {MAX_ROWS}"
            )));
        }
        let search = q.search.unwrap_or_default();
        if search.len() > MAX_SEARCH {
            return Err(ApiError::bad_request(format!(
                "'search' may be at most {MAX_SEARCH} bytes"
            )));
        }
        Ok(Listing {
            hub,
            search: search.to_lowercase(),
            limit,
        })
    }

    fn matches<'a>(&self, texts: impl IntoIterator<Item = &'a str>) -> bool {
        self.search.is_empty()
            || texts
                .into_iter()
                .any(|t| t.to_lowercase().contains(&self.search))
    }

    /// The rows `row` makes of this node's hub (none when the hub has no one here), sorted by
    /// `key`, as a page of at most `limit`.
    fn page<T: Serialize>(
        &self,
        c: &Console,
        row: impl FnOnce(&Hub) -> Vec<T>,
        key: impl Fn(&T) -> &str,
    ) -> Response {
        let mut all = c
            .node
            .registry
            .hub(&self.hub)
            .map_or_else(Vec::new, |h| row(&h));
        all.sort_by(|a, b| key(a).cmp(key(b)));
        let total = all.len();
        all.truncate(self.limit);
        Json(Rows {
            hub: crate::names::normalize_hub(&self.hub).into_owned(),
            node: c.node.config.node_id.clone(),
            total,
            truncated: total > self.limit,
            rows: all,
        })
        .into_response()
    }
}

/// A page of rows, with how many matched in all.
#[derive(Serialize)]
struct Rows<T> {
    hub: String,
    node: String,
    total: usize,
    truncated: bool,
    rows: Vec<T>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ConnectionRow {
    connection_id: String,
    user_id: Option<String>,
    protocol: &'static str,
    groups: Vec<String>,
    roles: Vec<String>,
}

/// `GET /console/api/hubs/{hub}/connections?search=&limit=`: this node's connections of the
/// hub, by id, with their groups and roles; `search` matches an id, user or group.
async fn connections(_: Operator, State(c): State<Console>, l: Listing) -> Response {
    let row = |h: &Hub| {
        let mut all = Vec::new();
        for conn in h.all_connections() {
            let mut groups: Vec<String> =
                conn.groups.lock().iter().map(|g| g.to_string()).collect();
            groups.sort();
            let user = conn.user_id.as_deref();
            let texts = std::iter::once(conn.id.as_ref())
                .chain(user)
                .chain(groups.iter().map(String::as_str));
            if !l.matches(texts) {
                continue;
            }
            all.push(ConnectionRow {
                connection_id: conn.id.to_string(),
                user_id: user.map(str::to_string),
                protocol: conn.protocol.name().unwrap_or("websocket"),
                groups,
                roles: conn.roles.lock().to_claims(),
            });
        }
        all
    };
    l.page(&c, row, |r| &r.connection_id)
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct UserRow {
    user_id: String,
    connections: usize,
    groups: Vec<String>,
}

/// `GET /console/api/hubs/{hub}/users?search=&limit=`: users with connections on this node,
/// with how many and the groups those connections are in (or the user was added to).
async fn users(_: Operator, State(c): State<Console>, l: Listing) -> Response {
    let row = |h: &Hub| {
        let mut all = Vec::new();
        for (user, n) in h.users() {
            let mut groups: BTreeSet<String> =
                h.user_groups(&user).iter().map(|g| g.to_string()).collect();
            for conn in h.user_connections(&user) {
                groups.extend(conn.groups.lock().iter().map(|g| g.to_string()));
            }
            if !l.matches(std::iter::once(user.as_ref()).chain(groups.iter().map(String::as_str))) {
                continue;
            }
            all.push(UserRow {
                user_id: user.to_string(),
                connections: n,
                groups: groups.into_iter().collect(),
            });
        }
        all
    };
    l.page(&c, row, |r| &r.user_id)
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct GroupRow {
    group: String,
    members: usize,
    users: Vec<String>,
}

/// Users a group row names at most.
const GROUP_USERS: usize = 20;

/// `GET /console/api/hubs/{hub}/groups?search=&limit=`: groups with members on this node, with
/// the users among them; `search` matches a group or one of its users.
async fn groups(_: Operator, State(c): State<Console>, l: Listing) -> Response {
    let row = |h: &Hub| {
        let mut all = Vec::new();
        for (group, n) in h.groups() {
            let mut users: BTreeSet<String> = BTreeSet::new();
            if let Some(g) = h.group(&group) {
                for m in g.members() {
                    if let Some(u) = &m.user_id {
                        users.insert(u.to_string());
                    }
                }
            }
            if !l.matches(std::iter::once(group.as_ref()).chain(users.iter().map(String::as_str))) {
                continue;
            }
            all.push(GroupRow {
                group: group.to_string(),
                members: n,
                users: users.into_iter().take(GROUP_USERS).collect(),
            });
        }
        all
    };
    l.page(&c, row, |r| &r.group)
}
