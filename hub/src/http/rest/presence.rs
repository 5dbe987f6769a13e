//! REST presence across nodes: the users and groups of a hub, the users of a group and the
//! groups of a user, each sorted by name and paged as the service pages group members:
//! `maxpagesize` (1–200, default 200) per page, `top` in all, `continuationToken` the last
//! name of the previous page, `nextLink` the URL of the next one, and `count` the total.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::{Call, params};
use crate::http::error::ApiError;

/// How a listing is paged.
struct Paging {
    page_size: usize,
    top: Option<usize>,
    after: String,
}

impl Paging {
    fn of(call: &Call) -> Result<Self, ApiError> {
        let q = &call.query;
        let page_size = q
            .number("maxpagesize", 1..=params::MAX_PAGE_SIZE as u64)?
            .unwrap_or(params::MAX_PAGE_SIZE as u64) as usize;
        let top = q
            .number("top", 1..=u64::from(u32::MAX))?
            .map(|t| t as usize);
        let after = q.one("continuationToken").unwrap_or_default().to_string();
        Ok(Paging {
            page_size,
            top,
            after,
        })
    }

    /// The page of `items` (sorted by name) after the continuation token, and the link to
    /// the next page when there is one.
    fn page<T>(
        &self,
        call: &Call,
        path: &str,
        items: impl Iterator<Item = (String, T)>,
    ) -> (Vec<(String, T)>, Option<String>) {
        let mut rest = items.filter(|(k, _)| self.after.is_empty() || *k > self.after);
        let take = self.top.map_or(self.page_size, |t| t.min(self.page_size));
        let page: Vec<(String, T)> = rest.by_ref().take(take).collect();
        let more = rest.next().is_some() && self.top.is_none_or(|t| t > take);
        let next = match (more, page.last()) {
            (true, Some((last, _))) => Some(self.link(call, path, take, last)),
            _ => None,
        };
        (page, next)
    }

    fn link(&self, call: &Call, path: &str, taken: usize, after: &str) -> String {
        use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        q.append_pair(
            "api-version",
            call.query.one("api-version").unwrap_or("2024-12-01"),
        );
        q.append_pair("maxpagesize", &self.page_size.to_string());
        if let Some(t) = self.top {
            q.append_pair("top", &(t - taken).to_string());
        }
        q.append_pair("continuationToken", after);
        format!(
            "{}/api/hubs/{}{path}?{}",
            super::base_url(call),
            utf8_percent_encode(&call.hub, NON_ALPHANUMERIC),
            q.finish()
        )
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct User {
    user_id: String,
    connection_count: usize,
}

#[derive(Serialize)]
struct Group {
    name: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Page<T> {
    value: Vec<T>,
    count: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_link: Option<String>,
}

fn users_page(
    call: &Call,
    path: &str,
    users: std::collections::BTreeMap<String, usize>,
) -> Result<Response, ApiError> {
    let paging = Paging::of(call)?;
    let count = users.len();
    let (page, next_link) = paging.page(call, path, users.into_iter());
    let value = page
        .into_iter()
        .map(|(user_id, connection_count)| User {
            user_id,
            connection_count,
        })
        .collect();
    Ok(ok(Page {
        value,
        count,
        next_link,
    }))
}

fn groups_page(
    call: &Call,
    path: &str,
    groups: std::collections::BTreeSet<String>,
) -> Result<Response, ApiError> {
    let paging = Paging::of(call)?;
    let count = groups.len();
    let (page, next_link) = paging.page(call, path, groups.into_iter().map(|g| (g, ())));
    let value = page.into_iter().map(|(name, ())| Group { name }).collect();
    Ok(ok(Page {
        value,
        count,
        next_link,
    }))
}

fn ok<T: Serialize>(body: T) -> Response {
    (StatusCode::OK, axum::Json(body)).into_response()
}

fn encoded(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// GET `/users`: every user online on any node, with its connection count.
pub(super) async fn users(call: &Call) -> Result<Response, ApiError> {
    let users = call.app.online_users(&call.hub).await;
    users_page(call, "/users", users)
}

/// GET `/groups`: every group with a member on any node.
pub(super) async fn groups(call: &Call) -> Result<Response, ApiError> {
    let groups = call.app.online_groups(&call.hub).await;
    groups_page(call, "/groups", groups)
}

/// GET `/groups/{group}/users`: the users in a group on any node.
pub(super) async fn group_users(call: &Call, group: &str) -> Result<Response, ApiError> {
    params::group(group)?;
    let users = call.app.group_users(&call.hub, group).await;
    users_page(call, &format!("/groups/{}/users", encoded(group)), users)
}

/// GET `/users/{user}/groups`: the groups a user's connections are in, on any node.
pub(super) async fn user_groups(call: &Call, user: &str) -> Result<Response, ApiError> {
    params::id("userId", user)?;
    let groups = call.app.user_online_groups(&call.hub, user).await;
    groups_page(call, &format!("/users/{}/groups", encoded(user)), groups)
}
