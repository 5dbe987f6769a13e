//! MQTT 3.1.1 and 5.0 connections, as Azure Web PubSub serves them: the CONNECT handshake
//! (client id = connection id, the `connect` event with the `mqtt` properties, CONNACK with its
//! reason code), then the session in [`session`]: topics are groups, SUBSCRIBE joins and
//! UNSUBSCRIBE leaves, PUBLISH sends to the group, and what the hub sends a user, a connection
//! or everyone arrives on `$webpubsub/server/messages`.
//!
//! The token was checked on the upgrade (`http::client::client_mqtt`); everything here happens
//! on the open socket, so refusals are CONNACK reason codes.

mod session;

use std::sync::Arc;
use std::time::Duration;

use axum::http::HeaderMap;
use futures_util::{SinkExt, StreamExt};
use nerve_protocol::codec::mqtt::packets::{self, Hello, Outbound, Welcome};
use nerve_protocol::codec::mqtt::{self, MqttError, PacketReader, Version, reason};
use nerve_protocol::{Subprotocol, close};
use tracing::debug;

use crate::metrics;
use crate::node::Node;
use crate::registry::{ConnectionSpec, Roles};
use crate::socket::{Message, Socket};
use crate::upstream::connect::{MqttConnectProperties, MqttUserProperty};
use crate::upstream::{ConnectRequest, EventContext, Notice};

/// QoS 1 and 2 messages from a client the hub takes unacknowledged (its Receive Maximum).
pub const RECEIVE_MAXIMUM: u16 = 100;

/// QoS 1 messages the hub sends a client before it waits for PUBACKs, whatever the client's
/// Receive Maximum.
const MAX_IN_FLIGHT: u16 = 100;

/// Keep-alive the hub uses for an MQTT 5 client that asks for none (or for more than 3.1.1
/// clients may), in seconds.
const DEFAULT_KEEP_ALIVE_V5: u16 = mqtt::MAX_KEEP_ALIVE_V311;

/// How long a client id's previous connection gets to leave when a new one takes it over.
const TAKEOVER_WAIT: Duration = Duration::from_secs(3);

/// An MQTT upgrade the endpoint accepted: who the token says the client is.
pub struct MqttOpening {
    /// The hub (normalized).
    pub hub: Arc<str>,
    /// User id from the token.
    pub user_id: Option<String>,
    /// Roles from the token.
    pub roles: Vec<String>,
    /// Groups from the token.
    pub groups: Vec<String>,
    /// The `connect` event's body, when the hub has a connect handler.
    pub connect_request: Option<ConnectRequest>,
    /// The upgrade's headers (trace context for the `connect` event).
    pub trace_headers: HeaderMap,
}

/// A refused CONNECT: the MQTT 5 reason code and why.
struct Refusal(u8, String);

impl Refusal {
    fn new(code: u8, why: impl Into<String>) -> Self {
        Refusal(code, why.into())
    }
}

/// Runs an MQTT connection: its CONNECT, then its session.
pub async fn serve(app: Arc<Node>, opening: MqttOpening, mut socket: Socket) {
    let limits = &app.config.limits;
    let mut reader = PacketReader::new(limits.max_frame_bytes);
    let first = tokio::time::timeout(
        limits.handshake_timeout(),
        read_connect(&mut socket, &mut reader),
    )
    .await;
    let hello = match first {
        Ok(Ok(h)) => h,
        Ok(Err(Some(e))) => {
            metrics::global().protocol_error("mqtt_connect");
            debug!(error = %e, "refused an MQTT connection before its CONNECT");
            goodbye(&mut socket, close::NO_RECOVERY, &e.to_string()).await;
            return;
        }
        Ok(Err(None)) => return,
        Err(_) => {
            debug!("no MQTT CONNECT within the handshake timeout");
            goodbye(&mut socket, close::NO_RECOVERY, "No CONNECT in time").await;
            return;
        }
    };
    let version = hello.version;
    match accept(&app, opening, hello, reader).await {
        Ok((session, connack, admission)) => {
            if socket.send(Message::Binary(connack)).await.is_err() {
                debug!("the MQTT client left before its CONNACK");
            }
            app.tasks.track_future(session.run(socket)).await;
            drop(admission);
        }
        Err(Refusal(code, why)) => {
            debug!(code, reason = %why, "refused an MQTT CONNECT");
            if let Some(p) = Outbound::Refuse(code, why.clone()).packet(version)
                && let Ok(bytes) = mqtt::write(&p)
            {
                let _ = socket.send(Message::Binary(bytes)).await;
            }
            goodbye(&mut socket, close::NO_RECOVERY, &why).await;
        }
    }
}

/// Reads until the first packet is whole; it must be a CONNECT. `Err(None)`: the socket went.
async fn read_connect(
    socket: &mut Socket,
    reader: &mut PacketReader,
) -> Result<Hello, Option<MqttError>> {
    loop {
        if let Some(version) = reader.connect_version().map_err(Some)?
            && let Some(packet) = reader.next(version).map_err(Some)?
        {
            return packets::hello(packet).ok_or(Some(MqttError::NotConnect));
        }
        match socket.next().await {
            Some(Ok(Message::Binary(b))) => reader.push(&b),
            Some(Ok(Message::Text(_))) => {
                return Err(Some(MqttError::Malformed(
                    "MQTT packets travel in binary WebSocket frames".into(),
                )));
            }
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return Err(None),
            Some(Ok(_)) => {}
        }
    }
}

/// Checks a CONNECT the way Azure does and takes the connection's place (client id, budget,
/// upstream, registry): the session, its CONNACK and its place in the budget.
async fn accept(
    app: &Arc<Node>,
    opening: MqttOpening,
    mut hello: Hello,
    reader: PacketReader,
) -> Result<(session::MqttSession, bytes::Bytes, crate::limits::Admission), Refusal> {
    let assigned = check(&mut hello)?;
    let version = hello.version;
    let hub = app.registry.hub_or_create(&opening.hub);
    let conn_id: Arc<str> = Arc::from(hello.client_id.as_str());
    take_over(&hub, &conn_id).await?;

    let (mut user_id, mut roles, mut groups) = (opening.user_id, opening.roles, opening.groups);
    let mut state = None;
    if let Some(mut request) = opening.connect_request {
        request.mqtt = Some(MqttConnectProperties {
            protocol_version: version.level(),
            username: hello.username.clone(),
            password: hello.password.clone(),
            user_properties: hello
                .user_properties
                .iter()
                .map(|(name, value)| MqttUserProperty {
                    name: name.clone(),
                    value: value.clone(),
                })
                .collect(),
        });
        let ctx = EventContext {
            hub: opening.hub.clone(),
            connection_id: conn_id.clone(),
            user_id: user_id.as_deref().map(Arc::from),
            subprotocol: Some(Arc::from(mqtt::SUBPROTOCOL)),
        };
        let span = crate::request_span!(
            "mqtt.connect",
            otel.kind = "server",
            hub = %opening.hub,
            connection_id = %conn_id,
        );
        crate::telemetry::set_parent_from_headers(&span, &opening.trace_headers);
        let connecting = app.upstream.connect(&ctx, &request);
        match tracing::Instrument::instrument(connecting, span).await {
            Ok(Some(outcome)) => {
                let reply = outcome.response;
                if let Some(u) = reply.user_id.filter(|u| !u.is_empty()) {
                    user_id = Some(u);
                }
                for g in &reply.groups {
                    nerve_protocol::client_frame::validate_group_name(g).map_err(|msg| {
                        Refusal::new(
                            reason::UNSPECIFIED,
                            format!("the connect handler returned an invalid group: {msg}"),
                        )
                    })?;
                }
                groups.extend(reply.groups);
                roles.extend(reply.roles);
                state = outcome.state;
            }
            Ok(None) => {}
            Err(refused) => {
                let code = match refused.status.as_u16() {
                    401 => 0x86,
                    403 => reason::NOT_AUTHORIZED,
                    _ => reason::UNSPECIFIED,
                };
                return Err(Refusal::new(code, refused.message));
            }
        }
    }
    let admission = super::open::admit(app, user_id.as_deref()).map_err(|kind| {
        kind.count();
        Refusal::new(
            reason::QUOTA_EXCEEDED,
            "The hub is at its connection limit; try again later",
        )
    })?;
    let limits = &app.config.limits;
    let spec = ConnectionSpec {
        id: conn_id,
        hub: opening.hub.clone(),
        user_id: user_id.map(Arc::from),
        protocol: Subprotocol::mqtt(version),
        roles: Roles::from_claims(&roles),
        reconnection_token: None,
        max_queued_messages: limits.outbox_messages,
        max_queued_bytes: limits.outbox_bytes,
    };
    // A client that keeps no session still gets what it is promised from the CONNACK on.
    let (conn, rx) = super::open::register(
        app,
        &hub,
        spec,
        groups,
        Some(mqtt::SUBPROTOCOL.to_string()),
        state,
    )
    .await;
    let keep_alive = keep_alive(&hello);
    let welcome = Welcome {
        session_present: false,
        assigned_client_id: assigned.then(|| hello.client_id.clone()),
        receive_maximum: RECEIVE_MAXIMUM,
        max_packet_size: u32::try_from(limits.max_frame_bytes).unwrap_or(u32::MAX),
        server_keep_alive: (keep_alive != hello.keep_alive).then_some(keep_alive),
        session_expiry: None,
    };
    let connack = Outbound::ConnAck(welcome)
        .packet(version)
        .and_then(|p| mqtt::write(&p).ok())
        .unwrap_or_default();
    app.announce(&conn, Notice::Connected);
    let session = session::MqttSession::new(app.clone(), hub, conn, rx, hello, keep_alive, reader);
    Ok((session, connack, admission))
}

/// Validates a CONNECT against what Azure accepts; gives an empty client id one (then `true`).
fn check(hello: &mut Hello) -> Result<bool, Refusal> {
    let v5 = hello.version == Version::V5;
    let mut assigned = false;
    if hello.client_id.is_empty() {
        if !v5 && !hello.clean {
            return Err(Refusal::new(
                reason::CLIENT_ID_NOT_VALID,
                "An empty client id needs a clean session",
            ));
        }
        hello.client_id = crate::registry::new_connection_id();
        assigned = true;
    }
    if !mqtt::valid_client_id(&hello.client_id) {
        return Err(Refusal::new(
            reason::CLIENT_ID_NOT_VALID,
            "A client id is 1 to 128 letters, digits, '-' or '_'",
        ));
    }
    if !v5 && !(1..=mqtt::MAX_KEEP_ALIVE_V311).contains(&hello.keep_alive) {
        return Err(Refusal::new(
            0x88,
            "An MQTT 3.1.1 keep-alive is 1 to 180 seconds",
        ));
    }
    if hello.authentication_method.is_some() {
        return Err(Refusal::new(
            0x8C,
            "Enhanced authentication is not supported; use the access token",
        ));
    }
    if let Some(w) = &hello.will {
        if w.retain {
            return Err(Refusal::new(
                reason::RETAIN_NOT_SUPPORTED,
                "Retained messages are not supported",
            ));
        }
        if w.topic.trim().is_empty()
            || w.topic.len() > mqtt::MAX_WILL_TOPIC
            || mqtt::publish_group(&w.topic).is_err()
        {
            return Err(Refusal::new(
                reason::TOPIC_NAME_INVALID,
                "The will topic must name a group (no wildcards, at most 1024 bytes)",
            ));
        }
        if w.payload.len() > mqtt::MAX_WILL_MESSAGE {
            return Err(Refusal::new(
                reason::PACKET_TOO_LARGE,
                "A will message is at most 2000 bytes",
            ));
        }
    }
    Ok(assigned)
}

/// The keep-alive the hub holds the client to: its own for 3.1.1 (checked to be 1–180 s);
/// for MQTT 5 its own within 1–180 s, else the server keep-alive the CONNACK names.
fn keep_alive(hello: &Hello) -> u16 {
    match hello.version {
        Version::V311 => hello.keep_alive,
        Version::V5 if (1..=mqtt::MAX_KEEP_ALIVE_V311).contains(&hello.keep_alive) => {
            hello.keep_alive
        }
        Version::V5 => DEFAULT_KEEP_ALIVE_V5,
    }
}

/// A client id already connected: its connection is closed (MQTT 5: "session taken over"), and
/// the new one waits for it to leave.
async fn take_over(hub: &crate::registry::Hub, id: &str) -> Result<(), Refusal> {
    let Some(old) = hub.connection(id) else {
        return Ok(());
    };
    old.close(session::TAKEN_OVER, close::NO_RECOVERY);
    let deadline = tokio::time::Instant::now() + TAKEOVER_WAIT;
    while hub.connection(id).is_some() {
        if tokio::time::Instant::now() > deadline {
            return Err(Refusal::new(
                reason::SERVER_BUSY,
                "The client id's previous connection has not closed yet",
            ));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

/// Sends a close frame and lets the client answer it.
async fn goodbye(socket: &mut Socket, code: u16, reason: &str) {
    if socket
        .send(crate::socket::close_frame(code, reason))
        .await
        .is_ok()
    {
        let drain = async { while let Some(Ok(_)) = socket.next().await {} };
        let _ = tokio::time::timeout(Duration::from_secs(1), drain).await;
    }
}
