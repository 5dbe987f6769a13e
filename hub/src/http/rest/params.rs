//! Query parameters and request bodies of REST calls, validated into typed values with a clear
//! 400 (or 413 / 415) when they are wrong.

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode, header};
use bytes::Bytes;
use nerve_protocol::client_frame::validate_group_name;
use nerve_protocol::{DataType, Metadata, Payload};

use crate::filter::Filter;
use crate::http::error::ApiError;

/// Largest `messageTtlSeconds`.
pub const MAX_TTL_SECS: u64 = 300;
/// Largest `maxpagesize`.
pub const MAX_PAGE_SIZE: usize = 200;

/// A request's query string; keys compare case-insensitively and may repeat.
#[derive(Debug, Clone, Default)]
pub struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    /// Parses a raw query string.
    pub fn parse(q: Option<&str>) -> Self {
        let pairs = q
            .map(|q| {
                url::form_urlencoded::parse(q.as_bytes())
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect()
            })
            .unwrap_or_default();
        Query { pairs }
    }

    /// The first value of `key`.
    pub fn one(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a repeatable `key`.
    pub fn all(&self, key: &str) -> Vec<&str> {
        self.pairs
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// An optional unsigned integer within `range`.
    pub fn number(
        &self,
        key: &str,
        range: std::ops::RangeInclusive<u64>,
    ) -> Result<Option<u64>, ApiError> {
        let Some(v) = self.one(key) else {
            return Ok(None);
        };
        match v.trim().parse::<u64>() {
            Ok(n) if range.contains(&n) => Ok(Some(n)),
            _ => Err(ApiError::bad_request(format!(
                "{key} must be an integer from {} to {}, got '{v}'",
                range.start(),
                range.end()
            ))),
        }
    }

    /// The `filter` parameter, parsed.
    pub fn filter(&self) -> Result<Option<Filter>, ApiError> {
        self.one("filter")
            .filter(|f| !f.trim().is_empty())
            .map(filter)
            .transpose()
    }

    /// `messageTtlSeconds` (0–300), validated: how long the message may wait for a connection
    /// (0 or none: for ever).
    pub fn ttl(&self) -> Result<Option<u64>, ApiError> {
        self.number("messageTtlSeconds", 0..=MAX_TTL_SECS)
    }

    /// The repeatable `excluded` connection ids.
    pub fn excluded(&self) -> std::collections::HashSet<String> {
        self.all("excluded")
            .into_iter()
            .map(str::to_string)
            .collect()
    }

    /// The close `reason`, with a default.
    pub fn reason(&self) -> String {
        self.one("reason")
            .filter(|r| !r.is_empty())
            .unwrap_or("The connection was closed by the application server")
            .to_string()
    }
}

/// Reads a body of at most `limit` bytes (413 beyond).
pub async fn read_body(body: Body, headers: &HeaderMap, limit: usize) -> Result<Bytes, ApiError> {
    let too_big = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PayloadTooLarge",
            format!("the request body is larger than the {limit}-byte limit"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_big());
    }
    axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| too_big())
}

/// Reads a message body and maps its Content-Type to a payload.
pub async fn payload(body: Body, headers: &HeaderMap, limit: usize) -> Result<Payload, ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let dt = DataType::from_content_type(&ct).ok_or_else(|| {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            format!(
                "unsupported Content-Type '{ct}'; use text/plain, application/json or application/octet-stream"
            ),
        )
    })?;
    let metadata = metadata(headers)?;
    let bytes = read_body(body, headers, limit).await?;
    Payload::from_body(dt, bytes)
        .map(|p| p.with_metadata(metadata))
        .map_err(|e| ApiError::bad_request(e.to_string()))
}

/// The message metadata of `X-WebPubSub-Metadata-<key>` request headers: the key is the rest
/// of the header name (lowercase, as HTTP names compare ignoring case), the value the header's.
/// A repeated header, a value that is not printable ASCII, or metadata past the bounds is a 400.
pub fn metadata(headers: &HeaderMap) -> Result<Metadata, ApiError> {
    let prefix = nerve_protocol::metadata::HEADER_PREFIX;
    let mut pairs = Vec::new();
    for name in headers.keys() {
        // Header names arrive lowercase.
        let Some(key) = name.as_str().strip_prefix(prefix) else {
            continue;
        };
        let mut values = headers.get_all(name).iter();
        let value = values.next().map(|v| v.as_bytes()).unwrap_or_default();
        if values.next().is_some() {
            return Err(ApiError::bad_request(format!(
                "metadata header '{name}' is given more than once"
            )));
        }
        let value = std::str::from_utf8(value).map_err(|_| {
            ApiError::bad_request(format!(
                "metadata value of '{key}' is invalid: use printable ASCII characters"
            ))
        })?;
        pairs.push((key.to_string(), value.to_string()));
    }
    if pairs.len() > nerve_protocol::metadata::MAX_ENTRIES {
        return Err(ApiError::bad_request(
            nerve_protocol::MetadataError::TooMany.to_string(),
        ));
    }
    Metadata::new(pairs).map_err(|e| ApiError::bad_request(e.to_string()))
}

/// Parses an OData filter; a bad one is a 400 worded as the service words it, with Nerve's
/// own explanation in `details`.
pub fn filter(text: &str) -> Result<Filter, ApiError> {
    Filter::parse(text)
        .map_err(|e| ApiError::bad_request(e.service_message(text)).with_detail(e.to_string()))
}

/// A group name from the path or the query, validated.
pub fn group(name: &str) -> Result<(), ApiError> {
    validate_group_name(name).map_err(ApiError::bad_request)
}

/// A user or connection id from the path: not empty.
pub fn id(kind: &str, value: &str) -> Result<(), ApiError> {
    if value.is_empty() {
        return Err(ApiError::bad_request(format!("{kind} must not be empty")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values() {
        let q = Query::parse(Some(
            "excluded=a&Excluded=b&messageTtlSeconds=301&top=5&filter=userId%20eq%20%27x%27",
        ));
        assert_eq!(q.excluded().len(), 2);
        assert!(q.ttl().is_err());
        assert_eq!(q.number("top", 1..=10).unwrap(), Some(5));
        assert!(q.filter().unwrap().is_some());
        let bad = Query::parse(Some("filter=userId%20eq"))
            .filter()
            .unwrap_err();
        assert_eq!(bad.status, StatusCode::BAD_REQUEST);
        assert_eq!(
            bad.message,
            "Invalid syntax for 'userId eq': Syntax error at position 9 in 'userId eq'. (Parameter 'filter')"
        );
        assert!(
            bad.detail.is_some_and(|d| d.contains("expected a value")),
            "Nerve's explanation stays in details"
        );
        assert_eq!(Query::parse(None).ttl().unwrap(), None);
    }

    #[test]
    fn metadata_headers() {
        let mut h = HeaderMap::new();
        h.insert("x-webpubsub-metadata-Trace-Id", "t1".parse().unwrap());
        h.insert("x-other", "no".parse().unwrap());
        let m = metadata(&h).unwrap();
        assert_eq!(m.iter().collect::<Vec<_>>(), vec![("trace-id", "t1")]);
        h.append("x-webpubsub-metadata-trace-id", "t2".parse().unwrap());
        assert!(metadata(&h).unwrap_err().message.contains("more than once"));
        let mut h = HeaderMap::new();
        h.insert(
            "x-webpubsub-metadata-k",
            axum::http::HeaderValue::from_bytes("é".as_bytes()).unwrap(),
        );
        assert_eq!(metadata(&h).unwrap_err().status, StatusCode::BAD_REQUEST);
    }
}
