//! POST `/:generateToken`: a client access token signed with the primary key, for callers
//! (Entra-authenticated SDKs) that cannot sign one themselves.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::{Call, params};
use crate::http::error::ApiError;

/// Longest token lifetime accepted, in minutes (one year).
const MAX_MINUTES: u64 = 525_600;

/// Issues `{"token":…}` for `userId`, `role`*, `group`*, `minutesToExpire` and `clientType`.
pub(super) fn generate(call: &Call) -> Result<Response, ApiError> {
    let q = &call.query;
    let minutes = q.number("minutesToExpire", 1..=MAX_MINUTES)?.unwrap_or(60);
    let roles: Vec<String> = q.all("role").into_iter().map(str::to_string).collect();
    let groups: Vec<String> = q.all("group").into_iter().map(str::to_string).collect();
    for g in &groups {
        params::group(g)?;
    }
    let client_type = q.one("clientType").unwrap_or_default();
    let protocol = crate::auth::ClientProtocol::parse(client_type).map_err(|_| {
        ApiError::bad_request(format!(
            "unknown clientType '{client_type}'; expected Default, MQTT or SocketIO"
        ))
    })?;
    let endpoint = match &call.app.config.public_endpoint {
        Some(e) => e.trim_end_matches('/').to_string(),
        None => {
            let host = call
                .headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or("localhost");
            format!("http://{host}")
        }
    };
    let aud = format!("{endpoint}/{}", protocol.path(&call.hub));
    let user = q.one("userId").filter(|u| !u.is_empty());
    let token = call
        .app
        .keys
        .client_token(&aud, user, &roles, &groups, minutes * 60);
    Ok((
        StatusCode::OK,
        axum::Json(serde_json::json!({ "token": token })),
    )
        .into_response())
}
