//! The WebSocket endpoint: hub name, token, subprotocol and reconnection are settled here,
//! before any session exists. A refused handshake is an HTTP error with a JSON reason and
//! leaves nothing behind.

use std::sync::Arc;

use crate::socket::WebSocketConfig;
use crate::socket::upgrade::WsUpgrade;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use nerve_protocol::Subprotocol;
use nerve_protocol::client_frame::validate_group_name;
use nerve_protocol::codec::mqtt::SUBPROTOCOL as MQTT_SUBPROTOCOL;
use nerve_protocol::subprotocol::{JSON, JSON_RELIABLE, PROTOBUF, PROTOBUF_RELIABLE};

use crate::auth::{AuthError, normalize_audience};
use crate::http::error::ApiError;
use crate::metrics;
use crate::names::valid_hub_name;
use crate::node::Node;
use crate::registry::{ConnectionSpec, Roles};
use crate::session::SimpleMode;
use crate::session::open::{self, Opening};
use crate::upstream::{ConnectRequest, EventContext, EventKind};

/// `GET /client/hubs/{hub}`
pub async fn client_hub_path(
    State(app): State<Arc<Node>>,
    Path(hub): Path<String>,
    headers: HeaderMap,
    uri: Uri,
    ws: WsUpgrade,
) -> Response {
    connect(app, hub, headers, uri, ws).await
}

/// `GET /client?hub={hub}`
pub async fn client_hub_query(
    State(app): State<Arc<Node>>,
    headers: HeaderMap,
    uri: Uri,
    ws: WsUpgrade,
) -> Response {
    let hub = query_value(&uri, "hub").unwrap_or_default();
    connect(app, hub, headers, uri, ws).await
}

/// `GET /clients/mqtt/hubs/{hub}`: MQTT 3.1.1 and 5.0 over WebSocket (subprotocol `mqtt`).
/// The token is checked here, as for the Web PubSub endpoint (401 on the upgrade); the MQTT
/// CONNECT and everything after it is the MQTT session's (`session::mqtt`).
pub async fn client_mqtt(
    State(app): State<Arc<Node>>,
    Path(hub_name): Path<String>,
    headers: HeaderMap,
    uri: Uri,
    ws: WsUpgrade,
) -> Response {
    if !valid_hub_name(&hub_name) {
        return ApiError::bad_request(format!(
            "invalid hub name '{hub_name}': a letter, then up to 127 letters, digits or _`,.[]"
        ))
        .into_response();
    }
    if !crate::tls::origin_allowed(&app.config.security.allowed_origins, &headers) {
        metrics::global().auth_failure("origin");
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "OriginNotAllowed",
            "this page's origin may not connect; add it to security.allowed_origins",
        )
        .into_response();
    }
    if !ws.offered().iter().any(|p| p == MQTT_SUBPROTOCOL) {
        metrics::global().protocol_error("unknown_subprotocol");
        return ApiError::bad_request(format!(
            "this endpoint speaks MQTT over WebSocket: offer the '{MQTT_SUBPROTOCOL}' subprotocol"
        ))
        .into_response();
    }
    let hub_key = crate::names::normalize_hub(&hub_name).into_owned();
    let settings = app.config.hub_settings(&hub_key);
    let path = format!("/{MQTT_PATH}/{hub_name}");
    let token = query_value(&uri, "access_token").or_else(|| crate::auth::bearer_token(&headers));
    let claims = match token {
        Some(t) => {
            let host = headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or_default()
                .to_ascii_lowercase();
            match app.keys.verify(&t, |aud| {
                client_audience_ok(aud, &host, &hub_name, app.public_host(), MQTT_PATH)
            }) {
                Ok(c) => Some(c),
                Err(e) => return unauthorized_at(&path, e),
            }
        }
        None if settings.anonymous_connect => None,
        None => return unauthorized_at(&path, AuthError::Missing),
    };
    if let Some(c) = &claims {
        for g in &c.groups {
            if let Err(msg) = validate_group_name(g) {
                return ApiError::bad_request(format!("invalid group in token: {msg}"))
                    .into_response();
            }
        }
    }
    let connect_request = app
        .upstream
        .handles(&hub_key, EventKind::Connect)
        .then(|| ConnectRequest::new(claims.as_ref(), &uri, &headers, ws.offered().to_vec()));
    let mut ws = configure(&app, ws, Subprotocol::Simple);
    ws.select_protocol(HeaderValue::from_static(MQTT_SUBPROTOCOL));
    let (user_id, roles, groups) = match claims {
        Some(c) => (c.sub.filter(|u| !u.is_empty()), c.role, c.groups),
        None => (None, Vec::new(), Vec::new()),
    };
    let opening = crate::session::mqtt::MqttOpening {
        hub: Arc::from(hub_key.as_str()),
        user_id,
        roles,
        groups,
        connect_request,
        trace_headers: headers,
    };
    ws.on_upgrade(move |socket| crate::session::mqtt::serve(app, opening, socket))
}

fn query_value(uri: &Uri, key: &str) -> Option<String> {
    let q = uri.query()?;
    url::form_urlencoded::parse(q.as_bytes())
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

async fn connect(
    app: Arc<Node>,
    hub_name: String,
    headers: HeaderMap,
    uri: Uri,
    ws: WsUpgrade,
) -> Response {
    if !valid_hub_name(&hub_name) {
        return ApiError::bad_request(format!(
            "invalid hub name '{hub_name}': a letter, then up to 127 letters, digits or _`,.[]"
        ))
        .into_response();
    }
    if !crate::tls::origin_allowed(&app.config.security.allowed_origins, &headers) {
        metrics::global().auth_failure("origin");
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "OriginNotAllowed",
            "this page's origin may not connect; add it to security.allowed_origins",
        )
        .into_response();
    }
    let protocol = Subprotocol::negotiate(ws.offered().iter().map(String::as_str));
    let offered_any = !ws.offered().is_empty();
    let hub_key = crate::names::normalize_hub(&hub_name).into_owned();
    // Unknown subprotocols are the connect handler's to choose from.
    let connect_handler = app.upstream.handles(&hub_key, EventKind::Connect);
    if protocol == Subprotocol::Simple && offered_any && !connect_handler {
        metrics::global().protocol_error("unknown_subprotocol");
        return ApiError::bad_request(format!(
            "unsupported subprotocol; this hub speaks '{JSON}', '{JSON_RELIABLE}', '{PROTOBUF}' and '{PROTOBUF_RELIABLE}', or plain WebSocket with none"
        ))
        .into_response();
    }
    let mut ws = configure(&app, ws, protocol);

    if let Some(conn_id) = query_value(&uri, "awps_connection_id") {
        let token = query_value(&uri, "awps_reconnection_token").unwrap_or_default();
        return reconnect(app, &hub_name, conn_id, token, protocol, ws);
    }

    let settings = app
        .config
        .hub_settings(&crate::names::normalize_hub(&hub_name));
    let token = query_value(&uri, "access_token").or_else(|| crate::auth::bearer_token(&headers));
    let claims = match token {
        Some(t) => {
            let host = headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or_default()
                .to_ascii_lowercase();
            match app.keys.verify(&t, |aud| {
                client_audience_ok(aud, &host, &hub_name, app.public_host(), CLIENT_PATH)
            }) {
                Ok(c) => Some(c),
                Err(e) => return unauthorized(&hub_name, e),
            }
        }
        None if settings.anonymous_connect => None,
        None => return unauthorized(&hub_name, AuthError::Missing),
    };

    let simple_mode = match simple_mode(&uri) {
        Ok(m) => m,
        Err(msg) => return ApiError::bad_request(msg).into_response(),
    };
    let connect_request = connect_handler
        .then(|| ConnectRequest::new(claims.as_ref(), &uri, &headers, ws.offered().to_vec()));
    let (user_id, roles, groups) = match claims {
        Some(c) => (c.sub, c.role, c.groups),
        None => (None, Vec::new(), Vec::new()),
    };
    for g in &groups {
        if let Err(msg) = validate_group_name(g) {
            return ApiError::bad_request(format!("invalid group in token: {msg}")).into_response();
        }
    }
    let conn_id = crate::registry::new_connection_id();
    let (mut user_id, mut roles, mut groups) = (user_id, roles, groups);
    let mut protocol = protocol;
    let mut subprotocol_name = protocol.name().map(str::to_string);
    let mut state = None;
    if let Some(request) = connect_request {
        let ctx = EventContext {
            hub: Arc::from(hub_key.as_str()),
            connection_id: Arc::from(conn_id.as_str()),
            user_id: user_id.as_deref().map(Arc::from),
            subprotocol: subprotocol_name.as_deref().map(Arc::from),
        };
        let span = crate::request_span!(
            "ws.connect",
            otel.kind = "server",
            hub = %hub_key,
            connection_id = %conn_id,
        );
        crate::telemetry::set_parent_from_headers(&span, &headers);
        let connecting = app.upstream.connect(&ctx, &request);
        let outcome = match tracing::Instrument::instrument(connecting, span).await {
            Ok(Some(o)) => o,
            Ok(None) => Default::default(),
            Err(refused) => {
                return ApiError::new(refused.status, "ConnectRefused", refused.message)
                    .into_response();
            }
        };
        let reply = outcome.response;
        if let Some(u) = reply.user_id.filter(|u| !u.is_empty()) {
            user_id = Some(u);
        }
        for g in &reply.groups {
            if let Err(msg) = validate_group_name(g) {
                let msg = format!("the connect handler returned an invalid group: {msg}");
                return ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "ConnectRefused", msg)
                    .into_response();
            }
        }
        groups.extend(reply.groups);
        roles.extend(reply.roles);
        // The known JSON subprotocols are the hub's own; the choice concerns simple clients.
        let chosen = reply.subprotocol.filter(|p| !p.is_empty());
        if let Some(p) = chosen.filter(|_| protocol == Subprotocol::Simple) {
            if !request.subprotocols.contains(&p) {
                let msg = format!(
                    "the connect handler chose subprotocol '{p}', which the client did not offer"
                );
                return ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "ConnectRefused", msg)
                    .into_response();
            }
            protocol = Subprotocol::negotiate([p.as_str()]);
            if let Ok(v) = HeaderValue::from_str(&p) {
                ws.select_protocol(v);
            }
            subprotocol_name = Some(p);
        }
        state = outcome.state;
    }
    let admission = match open::admit(&app, user_id.as_deref()) {
        Ok(a) => a,
        Err(kind) => return crate::http::error::refused_connection(kind, &app.config.limits),
    };
    let limits = &app.config.limits;
    let spec = ConnectionSpec {
        id: Arc::from(conn_id),
        hub: Arc::from(crate::names::normalize_hub(&hub_name).as_ref()),
        user_id: user_id.filter(|u| !u.is_empty()).map(Arc::from),
        protocol,
        roles: Roles::from_claims(&roles),
        reconnection_token: protocol
            .is_reliable()
            .then(|| random_token().into_boxed_str()),
        max_queued_messages: limits.outbox_messages,
        max_queued_bytes: limits.outbox_bytes,
    };
    let opening = Opening {
        spec,
        groups,
        subprotocol: subprotocol_name,
        state,
        simple_mode,
        admission,
    };
    ws.on_upgrade(move |socket| open::open(app, opening, socket))
}

fn configure(app: &Node, ws: WsUpgrade, protocol: Subprotocol) -> WsUpgrade {
    let max = app.config.limits.max_frame_bytes;
    let config = WebSocketConfig::default()
        .read_buffer_size(1024)
        // Frames fed in one batch are written together once 8 KiB gather or at the flush,
        // instead of one syscall and one TCP segment per frame. The buffer is allocated only
        // when something is written, so idle connections do not pay for it.
        .write_buffer_size(8 * 1024)
        .max_write_buffer_size(app.config.limits.outbox_bytes.max(max * 2))
        .max_message_size(Some(max))
        .max_frame_size(Some(max));
    let mut ws = ws.config(config);
    if let Some(name) = protocol.name() {
        ws.select_protocol(HeaderValue::from_static(name));
    }
    ws
}

fn simple_mode(uri: &Uri) -> Result<SimpleMode, String> {
    match query_value(uri, "webpubsub_mode").as_deref() {
        None | Some("sendEvent") => Ok(SimpleMode::SendEvent),
        Some("sendToGroup") => {
            let group = query_value(uri, "group")
                .ok_or("webpubsub_mode=sendToGroup needs a 'group' query parameter")?;
            validate_group_name(&group)?;
            Ok(SimpleMode::SendToGroup(group))
        }
        Some(other) => Err(format!(
            "unknown webpubsub_mode '{other}'; expected sendEvent or sendToGroup"
        )),
    }
}

fn reconnect(
    app: Arc<Node>,
    hub_name: &str,
    conn_id: String,
    token: String,
    protocol: Subprotocol,
    ws: WsUpgrade,
) -> Response {
    let hub = crate::names::normalize_hub(hub_name).into_owned();
    ws.on_upgrade(move |socket| async move {
        open::reconnect(app, &hub, &conn_id, &token, protocol, socket).await;
    })
}

/// Where Web PubSub protocol clients connect (`{base}/{hub}`; `/client?hub=` too).
const CLIENT_PATH: &str = "client/hubs";

/// Where MQTT clients connect: `{base}/{hub}`.
const MQTT_PATH: &str = "clients/mqtt/hubs";

/// A client token's audience must name this hub on this host (http≈ws, any case), under the
/// endpoint `base` it is for.
fn client_audience_ok(
    aud: &str,
    host: &str,
    hub: &str,
    public_host: Option<&str>,
    base: &str,
) -> bool {
    let n = normalize_audience(aud);
    let Some(rest) = n
        .strip_prefix("http://")
        .or_else(|| n.strip_prefix("https://"))
    else {
        return false;
    };
    let (aud_host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let host_ok = strip_default_port(aud_host) == strip_default_port(host)
        || public_host.is_some_and(|p| strip_default_port(aud_host) == strip_default_port(p));
    let hub = hub.to_ascii_lowercase();
    host_ok && (path == format!("{base}/{hub}") || (base == CLIENT_PATH && path == "client"))
}

fn strip_default_port(h: &str) -> &str {
    h.strip_suffix(":80")
        .or_else(|| h.strip_suffix(":443"))
        .unwrap_or(h)
}

fn unauthorized(hub: &str, e: AuthError) -> Response {
    unauthorized_at(&format!("/client/hubs/{hub}"), e)
}

fn unauthorized_at(path: &str, e: AuthError) -> Response {
    let label = match e {
        AuthError::Missing => "missing",
        AuthError::Expired => "expired",
        AuthError::NotYetValid => "not_yet_valid",
        AuthError::BadSignature => "bad_signature",
        AuthError::WrongAlgorithm => "wrong_algorithm",
        AuthError::WrongAudience(_) | AuthError::NoAudience => "wrong_audience",
        AuthError::Malformed(_) => "malformed",
    };
    metrics::global().auth_failure(label);
    crate::auth::log_refusal(path, &e);
    ApiError::new(StatusCode::UNAUTHORIZED, "Unauthorized", e.to_string()).into_response()
}

fn random_token() -> String {
    use base64::Engine;
    let b: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_audience_rules() {
        assert!(client_audience_ok(
            "http://h:1/client/hubs/Chat",
            "h:1",
            "chat",
            None,
            CLIENT_PATH
        ));
        assert!(client_audience_ok(
            "wss://h/client/hubs/chat/",
            "h:443",
            "chat",
            None,
            CLIENT_PATH
        ));
        assert!(client_audience_ok(
            "http://h:1/client/?hub=chat",
            "h:1",
            "chat",
            None,
            CLIENT_PATH
        ));
        assert!(!client_audience_ok(
            "http://h:1/client/hubs/other",
            "h:1",
            "chat",
            None,
            CLIENT_PATH
        ));
        assert!(!client_audience_ok(
            "http://x:1/client/hubs/chat",
            "h:1",
            "chat",
            None,
            CLIENT_PATH
        ));
        assert!(client_audience_ok(
            "https://pub.example/client/hubs/chat",
            "h:1",
            "chat",
            Some("pub.example"),
            CLIENT_PATH
        ));
        assert!(client_audience_ok(
            "http://h:1/clients/mqtt/hubs/chat",
            "h:1",
            "chat",
            None,
            MQTT_PATH
        ));
        assert!(!client_audience_ok(
            "http://h:1/client/hubs/chat",
            "h:1",
            "chat",
            None,
            MQTT_PATH
        ));
        assert!(!client_audience_ok(
            "http://h:1/client",
            "h:1",
            "chat",
            None,
            MQTT_PATH
        ));
        assert!(!client_audience_ok(
            "ftp://h:1/client/hubs/chat",
            "h:1",
            "chat",
            None,
            CLIENT_PATH
        ));
    }
}
