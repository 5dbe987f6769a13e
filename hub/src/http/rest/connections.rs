//! REST operations on connections and users: existence checks, closes (a `disconnected`
//! message with the reason, then close code 1008) and permissions. Each change runs on this
//! node and, through the broker, on the nodes that may hold the connections.

use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::Response;

use super::{Call, params, run_command, status};
use crate::cluster::{Command, Selector};
use crate::http::error::ApiError;
use crate::registry::{Connection, Permission, Roles};

fn local_connection(call: &Call, id: &str) -> Option<Arc<Connection>> {
    call.app
        .registry
        .hub(&call.hub)
        .and_then(|h| h.connection(id))
        .filter(|c| !c.is_closing())
}

/// Whether a connection is open on this node or another.
pub(super) async fn connection_exists(call: &Call, id: &str) -> bool {
    local_connection(call, id).is_some() || call.app.broker.remote_connection(&call.hub, id).await
}

fn found(yes: bool) -> Result<Response, ApiError> {
    Ok(status(if yes {
        StatusCode::OK
    } else {
        StatusCode::NOT_FOUND
    }))
}

/// HEAD `/connections/{id}`
pub(super) async fn exists(call: &Call, id: &str) -> Result<Response, ApiError> {
    found(connection_exists(call, id).await)
}

/// HEAD `/users/{user}`
pub(super) async fn user_exists(call: &Call, user: &str) -> Result<Response, ApiError> {
    let local = call
        .app
        .registry
        .hub(&call.hub)
        .is_some_and(|h| h.has_user(user));
    found(local || call.app.broker.remote_user(&call.hub, user).await)
}

fn close(call: &Call, selector: Selector, excluded: bool) -> Result<Response, ApiError> {
    run_command(
        call,
        Command::Close {
            selector,
            reason: call.query.reason(),
            excluded: if excluded {
                call.query.excluded().into_iter().collect()
            } else {
                Vec::new()
            },
        },
    );
    Ok(status(StatusCode::NO_CONTENT))
}

/// DELETE `/connections/{id}`
pub(super) fn close_connection(call: &Call, id: &str) -> Result<Response, ApiError> {
    params::id("connectionId", id)?;
    close(call, Selector::Connection(id.to_string()), false)
}

/// POST `/:closeConnections`
pub(super) fn close_all(call: &Call) -> Result<Response, ApiError> {
    close(call, Selector::All, true)
}

/// POST `/users/{user}/:closeConnections`
pub(super) fn close_user(call: &Call, user: &str) -> Result<Response, ApiError> {
    params::id("userId", user)?;
    close(call, Selector::User(user.to_string()), true)
}

/// POST `/groups/{group}/:closeConnections`
pub(super) fn close_group(call: &Call, group: &str) -> Result<Response, ApiError> {
    params::group(group)?;
    close(call, Selector::Group(group.to_string()), true)
}

fn target(call: &Call) -> Result<Option<String>, ApiError> {
    match call.query.one("targetName") {
        None => Ok(None),
        Some(t) => {
            params::group(t)?;
            Ok(Some(t.to_string()))
        }
    }
}

fn permission_name(p: Permission) -> &'static str {
    match p {
        Permission::JoinLeaveGroup => "joinLeaveGroup",
        Permission::SendToGroup => "sendToGroup",
    }
}

/// PUT `/permissions/{permission}/connections/{id}`: 200, or 404 for an unknown connection.
pub(super) async fn grant(call: &Call, p: Permission, id: &str) -> Result<Response, ApiError> {
    let target = target(call)?;
    if !connection_exists(call, id).await {
        return Err(ApiError::not_found(format!(
            "connection '{id}' does not exist"
        )));
    }
    set_permission(call, p, id, target, true);
    Ok(status(StatusCode::OK))
}

/// DELETE `/permissions/{permission}/connections/{id}`: 204.
pub(super) fn revoke(call: &Call, p: Permission, id: &str) -> Result<Response, ApiError> {
    let target = target(call)?;
    set_permission(call, p, id, target, false);
    Ok(status(StatusCode::NO_CONTENT))
}

fn set_permission(call: &Call, p: Permission, id: &str, target: Option<String>, grant: bool) {
    let cmd = Command::Permission {
        conn: id.to_string(),
        permission: permission_name(p).to_string(),
        target,
        grant,
    };
    run_command(call, cmd);
}

/// HEAD `/permissions/{permission}/connections/{id}`: 200 if held, else 404. A connection on
/// another node is answered from its presence entry, which carries its roles.
pub(super) async fn check(call: &Call, p: Permission, id: &str) -> Result<Response, ApiError> {
    let target = target(call)?;
    if let Some(c) = local_connection(call, id) {
        return found(c.roles.lock().has(p, target.as_deref()));
    }
    let remote = call.app.broker.remote_roles(&call.hub, id).await;
    found(remote.is_some_and(|r| Roles::from_claims(&r).has(p, target.as_deref())))
}
