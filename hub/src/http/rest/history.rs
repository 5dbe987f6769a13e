//! REST group history: `GET /groups/{group}/messages`, the messages a hub kept for a group
//! (`[hubs.<hub>] history`), newest `top` without `after`, or `top` after an offset with a
//! `nextLink` to the rest. Offsets are those the messages carried to clients.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use nerve_protocol::Offset;
use serde::Serialize;

use super::{Call, params};
use crate::cluster::HistoryEntry;
use crate::http::error::ApiError;

/// Entries per page when `top` is not given.
const DEFAULT_TOP: u64 = 100;

/// Most entries per page.
const MAX_TOP: u64 = 1000;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Message {
    offset: String,
    data: serde_json::Value,
    data_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    from_user_id: Option<String>,
    at: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Page {
    value: Vec<Message>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_link: Option<String>,
    /// The oldest offset the hub still keeps.
    #[serde(skip_serializing_if = "Option::is_none")]
    first_offset: Option<String>,
    /// Messages after `after` were trimmed away (past the history's caps) before this read.
    trimmed: bool,
}

/// GET `/groups/{group}/messages?after={offset}&top={n}`: 200 with a page, 400 for a bad
/// `after` or `top`, 404 when the group keeps no history, 503 when the cluster cannot read it.
pub(super) async fn list(call: &Call, group: &str) -> Result<Response, ApiError> {
    params::group(group)?;
    let top = call
        .query
        .number("top", 1..=MAX_TOP)?
        .unwrap_or(DEFAULT_TOP) as usize;
    let after = call
        .query
        .one("after")
        .map(|a| Offset::parse(a.trim()))
        .transpose()
        .map_err(|e| ApiError::bad_request(format!("after: {e}")))?;
    let kept = call
        .app
        .config
        .hubs
        .get(&call.hub)
        .and_then(|h| h.history.as_ref())
        .is_some_and(|h| h.covers(group));
    if !kept {
        return Err(ApiError::not_found(format!(
            "hub '{}' keeps no history for group '{group}': configure [hubs.{}] history",
            call.hub, call.hub
        )));
    }
    let page = call
        .app
        .broker
        .history_page(&call.hub, group, after, top)
        .await
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                "the group's history cannot be read now (Redis is out of reach); retry",
            )
        })?;
    let next_link = match (page.more, page.entries.last()) {
        (true, Some(last)) => Some(next_link(call, group, top, last.offset)),
        _ => None,
    };
    let trimmed = after.is_some_and(|a| page.missed_after(a));
    let body = Page {
        value: page.entries.iter().filter_map(message).collect(),
        next_link,
        first_offset: page.first.map(|o| o.to_string()),
        trimmed,
    };
    Ok((StatusCode::OK, axum::Json(body)).into_response())
}

/// An entry as the API shows it, read back from the frame clients got.
fn message(e: &HistoryEntry) -> Option<Message> {
    let mut frame: serde_json::Value = serde_json::from_str(e.delivery.json_frame.as_str()).ok()?;
    let mut take = |k: &str| frame.get_mut(k).map(serde_json::Value::take);
    let text = |v: Option<serde_json::Value>| v.and_then(|v| v.as_str().map(str::to_string));
    Some(Message {
        offset: e.offset.to_string(),
        data: take("data").unwrap_or_default(),
        data_type: text(take("dataType")).unwrap_or_default(),
        from_user_id: text(take("fromUserId")),
        at: at(e.offset),
    })
}

/// When an entry was kept, RFC 3339 in UTC.
fn at(offset: Offset) -> String {
    let nanos = i128::from(offset.ms) * 1_000_000;
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

fn next_link(call: &Call, group: &str, top: usize, after: Offset) -> String {
    use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    q.append_pair(
        "api-version",
        call.query.one("api-version").unwrap_or("2024-12-01"),
    );
    q.append_pair("after", &after.to_string());
    q.append_pair("top", &top.to_string());
    format!(
        "{}/api/hubs/{}/groups/{}/messages?{}",
        super::base_url(call),
        utf8_percent_encode(&call.hub, NON_ALPHANUMERIC),
        utf8_percent_encode(group, NON_ALPHANUMERIC),
        q.finish()
    )
}
