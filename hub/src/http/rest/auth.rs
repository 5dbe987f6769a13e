//! REST authentication: a Bearer HS256 JWT, signed with any access key, whose `aud` is this
//! request's URL. The SDKs put the query string in `aud` while the docs say it is left out,
//! so the query is ignored on both sides; scheme, case and a trailing `/` are compared loosely.

use axum::http::{HeaderMap, StatusCode, Uri, header};
use percent_encoding::percent_decode_str;

use crate::auth::{AuthError, audience_matches};
use crate::http::error::ApiError;
use crate::metrics;
use crate::node::Node;

/// Checks the caller's token and answers which access key signed it (its position); the
/// error is a 401 with a JSON reason.
pub(super) fn authorize(app: &Node, headers: &HeaderMap, uri: &Uri) -> Result<usize, ApiError> {
    let path = uri.path();
    let token =
        crate::auth::bearer_token(headers).ok_or_else(|| unauthorized(path, AuthError::Missing))?;
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    let mut expected = vec![
        format!("http://{host}{path}"),
        format!("https://{host}{path}"),
    ];
    if let Some(public) = &app.config.public_endpoint {
        expected.push(format!("{}{path}", public.trim_end_matches('/')));
    }
    let decoded: Vec<String> = expected.iter().map(|e| decode(e)).collect();
    app.keys
        .verify_with_slot(&token, |aud| {
            let aud_decoded = decode(aud);
            expected.iter().any(|e| audience_matches(aud, e))
                || decoded.iter().any(|e| audience_matches(&aud_decoded, e))
        })
        .map(|(slot, _)| slot)
        .map_err(|e| unauthorized(path, e))
}

fn decode(s: &str) -> String {
    percent_decode_str(s).decode_utf8_lossy().into_owned()
}

fn unauthorized(path: &str, e: AuthError) -> ApiError {
    metrics::global().auth_failure("rest");
    crate::auth::log_refusal(path, &e);
    ApiError::new(StatusCode::UNAUTHORIZED, "Unauthorized", e.to_string())
}
