//! REST group membership: connections and users in and out of groups (users also for the
//! connections they open later), filtered bulk changes, existence, and paged member listing.
//! Changes run on this node and, through the broker, on the others; upstream joined/left
//! events fire on the node that holds the connection.

use axum::body::Body;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::connections::connection_exists;
use super::{Call, params, run_command, status};
use crate::cluster::Command;
use crate::http::error::ApiError;

/// HEAD `/groups/{group}`: 200 when it has a connection on any node.
pub(super) async fn exists(call: &Call, group: &str) -> Result<Response, ApiError> {
    let local = call
        .app
        .registry
        .hub(&call.hub)
        .and_then(|h| h.group(group))
        .is_some_and(|g| !g.is_empty());
    let yes = local
        || !call
            .app
            .broker
            .remote_members(&call.hub, group)
            .await
            .is_empty();
    Ok(status(if yes {
        StatusCode::OK
    } else {
        StatusCode::NOT_FOUND
    }))
}

/// PUT `/groups/{group}/connections/{id}`: 200, or 404 for an unknown connection.
pub(super) async fn add_connection(
    call: &Call,
    group: &str,
    id: &str,
) -> Result<Response, ApiError> {
    params::group(group)?;
    if !connection_exists(call, id).await {
        return Err(ApiError::not_found(format!(
            "connection '{id}' does not exist"
        )));
    }
    let cmd = Command::Join {
        conn: id.to_string(),
        group: group.to_string(),
    };
    run_command(call, cmd);
    Ok(status(StatusCode::OK))
}

/// DELETE `/groups/{group}/connections/{id}`: 204.
pub(super) fn remove_connection(call: &Call, group: &str, id: &str) -> Result<Response, ApiError> {
    params::group(group)?;
    let cmd = Command::Leave {
        conn: id.to_string(),
        group: Some(group.to_string()),
    };
    run_command(call, cmd);
    Ok(status(StatusCode::NO_CONTENT))
}

/// DELETE `/connections/{id}/groups`: 204.
pub(super) fn remove_connection_from_all(call: &Call, id: &str) -> Result<Response, ApiError> {
    let cmd = Command::Leave {
        conn: id.to_string(),
        group: None,
    };
    run_command(call, cmd);
    Ok(status(StatusCode::NO_CONTENT))
}

/// PUT `/users/{user}/groups/{group}`: 200; later connections of the user join too.
pub(super) fn add_user(call: &Call, user: &str, group: &str) -> Result<Response, ApiError> {
    params::id("userId", user)?;
    params::group(group)?;
    let cmd = Command::AddUser {
        user: user.to_string(),
        group: group.to_string(),
    };
    run_command(call, cmd);
    Ok(status(StatusCode::OK))
}

/// DELETE `/users/{user}/groups/{group}`: 204.
pub(super) fn remove_user(call: &Call, user: &str, group: &str) -> Result<Response, ApiError> {
    params::id("userId", user)?;
    params::group(group)?;
    let cmd = Command::RemoveUser {
        user: user.to_string(),
        group: Some(group.to_string()),
    };
    run_command(call, cmd);
    Ok(status(StatusCode::NO_CONTENT))
}

/// DELETE `/users/{user}/groups`: 204.
pub(super) fn remove_user_from_all(call: &Call, user: &str) -> Result<Response, ApiError> {
    params::id("userId", user)?;
    let cmd = Command::RemoveUser {
        user: user.to_string(),
        group: None,
    };
    run_command(call, cmd);
    Ok(status(StatusCode::NO_CONTENT))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupsFilter {
    groups: Vec<String>,
    filter: Option<String>,
}

/// POST `/:addToGroups` and `/:removeFromGroups`: every connection matching the filter joins
/// or leaves every listed group. 200.
pub(super) async fn filtered(call: &Call, body: Body, add: bool) -> Result<Response, ApiError> {
    let limit = call.app.config.limits.max_frame_bytes;
    let bytes = params::read_body(body, &call.headers, limit).await?;
    let req: GroupsFilter = serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::bad_request(format!(
            "the body must be {{\"groups\":[…],\"filter\":\"…\"}}: {e}"
        ))
    })?;
    if req.groups.is_empty() {
        return Err(ApiError::bad_request(
            "'groups' must list at least one group",
        ));
    }
    for g in &req.groups {
        params::group(g)?;
    }
    let filter = req
        .filter
        .filter(|f| !f.trim().is_empty())
        .ok_or_else(|| ApiError::bad_request("'filter' is required"))?;
    params::filter(&filter)?;
    let cmd = Command::Filtered {
        filter,
        groups: req.groups,
        add,
    };
    run_command(call, cmd);
    Ok(status(StatusCode::OK))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Member {
    connection_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_id: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Page {
    value: Vec<Member>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_link: Option<String>,
}

/// GET `/groups/{group}/connections`: members sorted by connection id, `maxpagesize` (1–200,
/// default 200) per page and `top` in all; `continuationToken` is the last id of the previous
/// page, and `nextLink` the absolute URL of the next one.
pub(super) async fn list(call: &Call, group: &str) -> Result<Response, ApiError> {
    params::group(group)?;
    let q = &call.query;
    let page_size = q
        .number("maxpagesize", 1..=params::MAX_PAGE_SIZE as u64)?
        .unwrap_or(params::MAX_PAGE_SIZE as u64) as usize;
    let top = q
        .number("top", 1..=u64::from(u32::MAX))?
        .map(|t| t as usize);
    let after = q.one("continuationToken").unwrap_or_default();
    // Every member on every node, by connection id.
    let members = call.app.group_members(&call.hub, group).await;
    let rest: Vec<(String, Option<String>)> = members
        .into_iter()
        .filter(|(id, _)| after.is_empty() || id.as_str() > after)
        .collect();
    let take = top.map_or(page_size, |t| t.min(page_size));
    let more = rest.len() > take && top.is_none_or(|t| t > take);
    let value: Vec<Member> = rest
        .into_iter()
        .take(take)
        .map(|(connection_id, user_id)| Member {
            connection_id,
            user_id,
        })
        .collect();
    let next_link = match (more, value.last()) {
        (true, Some(last)) => Some(next_link(
            call,
            group,
            page_size,
            top.map(|t| t - take),
            &last.connection_id,
        )),
        _ => None,
    };
    Ok((StatusCode::OK, axum::Json(Page { value, next_link })).into_response())
}

fn next_link(call: &Call, group: &str, page: usize, top: Option<usize>, after: &str) -> String {
    use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
    let base = super::base_url(call);
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    q.append_pair(
        "api-version",
        call.query.one("api-version").unwrap_or("2024-12-01"),
    );
    q.append_pair("maxpagesize", &page.to_string());
    if let Some(t) = top {
        q.append_pair("top", &t.to_string());
    }
    q.append_pair("continuationToken", after);
    let _ = &call.uri;
    format!(
        "{base}/api/hubs/{}/groups/{}/connections?{}",
        utf8_percent_encode(&call.hub, NON_ALPHANUMERIC),
        utf8_percent_encode(group, NON_ALPHANUMERIC),
        q.finish()
    )
}
