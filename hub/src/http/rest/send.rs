//! REST sends: to everyone, a user, a connection or a group, encoded once and handed to the
//! broker, which fans them out on this node and the others (202 Accepted). A send to a group
//! reaches PubSub clients as that group's message (`from:"group"`, no `fromUserId`), as the
//! service sends it; the others as `from:"server"` messages.

use std::sync::Arc;

use axum::body::Body;
use axum::http::StatusCode;
use axum::response::Response;
use nerve_protocol::Sender;

use super::{Call, params, status};
use crate::cluster::{Scope, Target};
use crate::http::error::ApiError;
use crate::metrics;
use crate::registry::Delivery;

/// The `excluded` ids and the `filter` (checked here, so a bad one is a 400 rather than a
/// message nobody receives).
fn scope(call: &Call, with_excluded: bool) -> Result<Scope, ApiError> {
    call.query.ttl()?;
    call.query.filter()?;
    Ok(Scope {
        excluded: if with_excluded {
            call.query.excluded().into_iter().collect()
        } else {
            Vec::new()
        },
        filter: call
            .query
            .one("filter")
            .filter(|f| !f.trim().is_empty())
            .map(str::to_string),
    })
}

async fn publish(
    call: &Call,
    target: Target,
    scope: Scope,
    body: Body,
) -> Result<Response, ApiError> {
    let limit = call.app.config.limits.max_frame_bytes;
    let payload = params::payload(body, &call.headers, limit).await?;
    metrics::global().message_in("rest", payload.size());
    call.app.trace.emit(|| {
        let e = call.app.trace.message(&call.hub, &payload);
        match &target {
            Target::Group(g) => e.in_group(g).detail(format!("REST to group {g}")),
            Target::User(u) => {
                let mut e = e.detail(format!("REST to user {u}"));
                e.user = Some(u.clone());
                e
            }
            Target::Connection(c) => {
                let mut e = e.detail(format!("REST to connection {c}"));
                e.connection = Some(c.clone());
                e
            }
            Target::All => e.detail("REST to everyone"),
        }
    });
    let from = match &target {
        Target::Group(group) => Sender::group(group, None),
        _ => Sender::Server,
    };
    let ttl = call.query.ttl()?.unwrap_or(0);
    let d: Arc<Delivery> = Delivery::with_ttl(from, payload, ttl);
    let local = call.app.registry.hub(&call.hub);
    call.app
        .broker
        .publish(&call.hub, local.as_ref(), target, scope, d);
    Ok(status(StatusCode::ACCEPTED))
}

/// POST `/:send`
pub(super) async fn to_all(call: &Call, body: Body) -> Result<Response, ApiError> {
    let scope = scope(call, true)?;
    publish(call, Target::All, scope, body).await
}

/// POST `/users/{user}/:send`
pub(super) async fn to_user(call: &Call, user: &str, body: Body) -> Result<Response, ApiError> {
    params::id("userId", user)?;
    let scope = scope(call, false)?;
    publish(call, Target::User(user.to_string()), scope, body).await
}

/// POST `/connections/{id}/:send`
pub(super) async fn to_connection(call: &Call, id: &str, body: Body) -> Result<Response, ApiError> {
    params::id("connectionId", id)?;
    call.query.ttl()?;
    publish(
        call,
        Target::Connection(id.to_string()),
        Scope::default(),
        body,
    )
    .await
}

/// POST `/groups/{group}/:send`
pub(super) async fn to_group(call: &Call, group: &str, body: Body) -> Result<Response, ApiError> {
    params::group(group)?;
    let scope = scope(call, true)?;
    publish(call, Target::Group(group.to_string()), scope, body).await
}
