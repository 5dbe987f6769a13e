//! The data-plane REST API under `/api/hubs/{hub}/…`, as the official server SDKs call it:
//! sends, existence checks, closes, group membership, permissions, filtered group changes,
//! client tokens, group member listing, group history and presence across nodes. Status codes match the service exactly, because
//! the SDKs throw on any status an operation does not declare.
//!
//! Every call carries a Bearer JWT signed with an access key whose audience is the request
//! URL; errors are `{code, message}` with `x-ms-error-code`. Sends and registry changes go
//! through the cluster broker, so a call made on any node reaches connections on every node.

mod auth;
mod connections;
mod groups;
mod history;
mod params;
mod presence;
pub mod route;
mod send;
mod token;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Extension;
use axum::Router as HttpRouter;
use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use tracing::Instrument;

use crate::http::error::ApiError;
use crate::limits::RestCaller;
use crate::livetrace::{Kind, TraceEvent};
use crate::names::valid_hub_name;
use crate::node::Node;
use route::{Op, RouteError};

pub use params::Query;

/// The REST routes, to be merged into the hub's router.
pub fn routes() -> HttpRouter<Arc<Node>> {
    HttpRouter::new().route("/api/hubs/{*rest}", any(dispatch))
}

/// One authorized REST call.
pub(crate) struct Call {
    pub(crate) app: Arc<Node>,
    /// Hub name, lowercase.
    pub(crate) hub: String,
    pub(crate) query: Query,
    pub(crate) headers: HeaderMap,
    pub(crate) uri: Uri,
}

async fn dispatch(
    State(app): State<Arc<Node>>,
    caller: Option<Extension<ConnectInfo<SocketAddr>>>,
    method: Method,
    headers: HeaderMap,
    uri: Uri,
    body: Body,
) -> Response {
    let peer = caller.map(|Extension(ConnectInfo(addr))| addr);
    if let Some(refused) = refusal(&app, peer, &headers, &uri) {
        return refused;
    }
    let (hub, op) = match route::parse(&method, uri.path()) {
        Ok(r) => r,
        Err(e) => return route_error(e).into_response(),
    };
    if !valid_hub_name(&hub) {
        return ApiError::bad_request(format!(
            "invalid hub name '{hub}': a letter, then up to 127 letters, digits or _`,.[]"
        ))
        .into_response();
    }
    let call = Call {
        hub: crate::names::normalize_hub(&hub).into_owned(),
        query: Query::parse(uri.query()),
        app,
        headers,
        uri,
    };
    let route = op_name(&op);
    let span = crate::request_span!(
        "rest",
        otel.name = %format_args!("rest {route}"),
        otel.kind = "server",
        hub = %call.hub,
        op = route,
        http.response.status_code = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
    );
    crate::telemetry::set_parent_from_headers(&span, &call.headers);
    let started = std::time::Instant::now();
    let response = match run(&call, op, body).instrument(span.clone()).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    span.record("http.response.status_code", response.status().as_u16());
    if response.status().is_server_error() {
        span.record("otel.status_code", "ERROR");
    }
    let took = started.elapsed();
    crate::metrics::global().rest_request(route, took);
    call.app.trace.emit(|| {
        TraceEvent::new(Kind::Rest, &call.hub).detail(format!(
            "{method} {} → {} in {:.1} ms",
            call.uri.path(),
            response.status().as_u16(),
            took.as_secs_f64() * 1000.0
        ))
    });
    response
}

/// Checks a request's Bearer token (signed with an access key, its audience this URL) and the
/// caller's REST rate: per key once verified, per address while its tokens fail. Answers the
/// refusal (401 or 429), or `None` to go on. The REST API and the console's API admit
/// callers here.
pub(crate) fn refusal(
    app: &Node,
    peer: Option<SocketAddr>,
    headers: &HeaderMap,
    uri: &Uri,
) -> Option<Response> {
    let slot = match auth::authorize(app, headers, uri) {
        Ok(slot) => slot,
        Err(e) => {
            if let Some(addr) = peer
                && let Err(retry) = app.rest_rate.check(RestCaller::Address(addr.ip()))
            {
                return Some(crate::http::error::rest_rate_refused(retry));
            }
            return Some(e.into_response());
        }
    };
    match app.rest_rate.check(RestCaller::Key(slot)) {
        Ok(()) => None,
        Err(retry) => Some(crate::http::error::rest_rate_refused(retry)),
    }
}

async fn run(call: &Call, op: Op, body: Body) -> Result<Response, ApiError> {
    match op {
        Op::SendToAll => send::to_all(call, body).await,
        Op::SendToUser(u) => send::to_user(call, &u, body).await,
        Op::SendToConnection(c) => send::to_connection(call, &c, body).await,
        Op::SendToGroup(g) => send::to_group(call, &g, body).await,
        Op::ConnectionExists(c) => connections::exists(call, &c).await,
        Op::UserExists(u) => connections::user_exists(call, &u).await,
        Op::GroupExists(g) => groups::exists(call, &g).await,
        Op::CloseConnection(c) => connections::close_connection(call, &c),
        Op::CloseAll => connections::close_all(call),
        Op::CloseUser(u) => connections::close_user(call, &u),
        Op::CloseGroup(g) => connections::close_group(call, &g),
        Op::GrantPermission(p, c) => connections::grant(call, p, &c).await,
        Op::RevokePermission(p, c) => connections::revoke(call, p, &c),
        Op::CheckPermission(p, c) => connections::check(call, p, &c).await,
        Op::AddConnectionToGroup(g, c) => groups::add_connection(call, &g, &c).await,
        Op::RemoveConnectionFromGroup(g, c) => groups::remove_connection(call, &g, &c),
        Op::RemoveConnectionFromAllGroups(c) => groups::remove_connection_from_all(call, &c),
        Op::ListGroupConnections(g) => groups::list(call, &g).await,
        Op::ListGroupMessages(g) => history::list(call, &g).await,
        Op::ListUsers => presence::users(call).await,
        Op::ListGroups => presence::groups(call).await,
        Op::ListGroupUsers(g) => presence::group_users(call, &g).await,
        Op::ListUserGroups(u) => presence::user_groups(call, &u).await,
        Op::AddUserToGroup(u, g) => groups::add_user(call, &u, &g),
        Op::RemoveUserFromGroup(u, g) => groups::remove_user(call, &u, &g),
        Op::RemoveUserFromAllGroups(u) => groups::remove_user_from_all(call, &u),
        Op::AddToGroups => groups::filtered(call, body, true).await,
        Op::RemoveFromGroups => groups::filtered(call, body, false).await,
        Op::GenerateToken => token::generate(call),
    }
}

/// The operation's name, the label of the REST latency metric.
fn op_name(op: &Op) -> &'static str {
    match op {
        Op::SendToAll => "sendToAll",
        Op::SendToUser(_) => "sendToUser",
        Op::SendToConnection(_) => "sendToConnection",
        Op::SendToGroup(_) => "sendToGroup",
        Op::ConnectionExists(_) => "connectionExists",
        Op::UserExists(_) => "userExists",
        Op::GroupExists(_) => "groupExists",
        Op::CloseConnection(_) => "closeConnection",
        Op::CloseAll => "closeAllConnections",
        Op::CloseUser(_) => "closeUserConnections",
        Op::CloseGroup(_) => "closeGroupConnections",
        Op::GrantPermission(..) => "grantPermission",
        Op::RevokePermission(..) => "revokePermission",
        Op::CheckPermission(..) => "checkPermission",
        Op::AddConnectionToGroup(..) => "addConnectionToGroup",
        Op::RemoveConnectionFromGroup(..) => "removeConnectionFromGroup",
        Op::RemoveConnectionFromAllGroups(_) => "removeConnectionFromAllGroups",
        Op::ListGroupConnections(_) => "listConnectionsInGroup",
        Op::ListGroupMessages(_) => "listGroupMessages",
        Op::ListUsers => "listUsers",
        Op::ListGroups => "listGroups",
        Op::ListGroupUsers(_) => "listUsersInGroup",
        Op::ListUserGroups(_) => "listGroupsOfUser",
        Op::AddUserToGroup(..) => "addUserToGroup",
        Op::RemoveUserFromGroup(..) => "removeUserFromGroup",
        Op::RemoveUserFromAllGroups(_) => "removeUserFromAllGroups",
        Op::AddToGroups => "addConnectionsToGroups",
        Op::RemoveFromGroups => "removeConnectionsFromGroups",
        Op::GenerateToken => "generateClientToken",
    }
}

fn route_error(e: RouteError) -> ApiError {
    match e {
        RouteError::NotFound => ApiError::not_found("no such REST operation"),
        RouteError::MethodNotAllowed => ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "this path does not take this HTTP method",
        ),
        RouteError::BadPath(m) => ApiError::bad_request(m),
        RouteError::BadPermission(p) => ApiError::bad_request(format!(
            "unknown permission '{p}'; expected sendToGroup or joinLeaveGroup"
        )),
    }
}

/// Runs a registry command on this node, and through the broker on the nodes that may hold
/// its connections.
pub(crate) fn run_command(call: &Call, cmd: crate::cluster::Command) {
    call.app.run_everywhere(&call.hub, cmd);
}

/// The hub's URL as the caller reaches it (for `nextLink`): the public endpoint, or the
/// request's host.
pub(crate) fn base_url(call: &Call) -> String {
    match &call.app.config.public_endpoint {
        Some(e) => e.trim_end_matches('/').to_string(),
        None => {
            let host = call
                .headers
                .get(axum::http::header::HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or("localhost");
            format!("http://{host}")
        }
    }
}

/// A bare status response (the SDKs read no body on success).
pub(crate) fn status(code: StatusCode) -> Response {
    code.into_response()
}
