//! Field-by-field validation of CloudEvents envelopes, so a malformed event from the network is
//! refused with an error that names the field and says what is wrong with it.

use serde_json::{Map, Value};

use super::{Envelope, SPEC_VERSION};
use crate::clock;

/// Longest id, source, type, subject or extension string the bus accepts.
const MAX_ATTRIBUTE_LEN: usize = 1024;
/// CloudEvents advises extension names of at most 20 characters; the bus enforces it.
const MAX_EXTENSION_NAME_LEN: usize = 20;

/// Why an envelope was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    /// The text is not JSON.
    #[error("envelope is not valid JSON: {0}")]
    Json(String),
    /// The JSON is not an object.
    #[error("envelope must be a JSON object")]
    NotObject,
    /// A required attribute is absent.
    #[error("required attribute `{0}` is missing")]
    Missing(&'static str),
    /// An attribute has the wrong JSON type.
    #[error("attribute `{name}` must be {expected}")]
    WrongType {
        /// Attribute name.
        name: String,
        /// What was expected.
        expected: &'static str,
    },
    /// An attribute that must be non-empty is empty.
    #[error("attribute `{0}` must not be empty")]
    Empty(String),
    /// An attribute is longer than the bus accepts.
    #[error("attribute `{0}` is longer than 1024 characters")]
    TooLong(String),
    /// `specversion` is not `1.0`.
    #[error("unsupported specversion `{0}` (this bus speaks CloudEvents 1.0)")]
    SpecVersion(String),
    /// A timestamp attribute is not RFC 3339.
    #[error("attribute `{name}` is not an RFC 3339 timestamp: `{value}`")]
    Timestamp {
        /// Attribute name.
        name: &'static str,
        /// The offending value.
        value: String,
    },
    /// `traceparent` does not follow W3C Trace Context.
    #[error("traceparent `{value}` is malformed: {reason}")]
    TraceParent {
        /// The offending value.
        value: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// An extension name breaks the CloudEvents naming rules.
    #[error("extension name `{name}` is invalid: {reason}")]
    ExtensionName {
        /// The offending name.
        name: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// An extension value is not a string, number or boolean.
    #[error("extension `{0}` must be a string, number or boolean")]
    ExtensionValue(String),
    /// `attempt` is not a non-negative integer.
    #[error("attribute `attempt` must be a non-negative integer, got `{0}`")]
    Attempt(String),
    /// A field the bus does not support.
    #[error("`{0}` is not supported by this bus (send JSON `data`)")]
    Unsupported(&'static str),
}

pub(super) fn req_string(
    map: &mut Map<String, Value>,
    name: &'static str,
) -> Result<String, EnvelopeError> {
    opt_string(map, name)?.ok_or(EnvelopeError::Missing(name))
}

pub(super) fn opt_string(
    map: &mut Map<String, Value>,
    name: &'static str,
) -> Result<Option<String>, EnvelopeError> {
    match map.remove(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(EnvelopeError::WrongType {
            name: name.to_string(),
            expected: "a string",
        }),
    }
}

pub(super) fn take_attempt(map: &mut Map<String, Value>) -> Result<u32, EnvelopeError> {
    match map.remove("attempt") {
        None | Some(Value::Null) => Ok(0),
        Some(Value::Number(n)) => n
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| EnvelopeError::Attempt(n.to_string())),
        // CloudEvents integer extensions may arrive as strings through some bindings.
        Some(Value::String(s)) => s.parse::<u32>().map_err(|_| EnvelopeError::Attempt(s)),
        Some(other) => Err(EnvelopeError::Attempt(other.to_string())),
    }
}

fn non_empty(name: &str, value: &str) -> Result<(), EnvelopeError> {
    if value.is_empty() {
        return Err(EnvelopeError::Empty(name.to_string()));
    }
    if value.len() > MAX_ATTRIBUTE_LEN {
        return Err(EnvelopeError::TooLong(name.to_string()));
    }
    Ok(())
}

fn timestamp(name: &'static str, value: &Option<String>) -> Result<(), EnvelopeError> {
    match value {
        Some(v) if clock::parse_ms(v).is_none() => Err(EnvelopeError::Timestamp {
            name,
            value: v.clone(),
        }),
        _ => Ok(()),
    }
}

/// Checks a W3C `traceparent` header value (`00-<32 hex>-<16 hex>-<2 hex>`).
pub fn validate_traceparent(value: &str) -> Result<(), EnvelopeError> {
    let fail = |reason| EnvelopeError::TraceParent {
        value: value.to_string(),
        reason,
    };
    let parts: Vec<&str> = value.split('-').collect();
    if parts.len() != 4 {
        return Err(fail("expected four dash-separated fields"));
    }
    let lower_hex = |s: &str, len: usize| {
        s.len() == len
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    let [version, trace_id, parent_id, flags] = [parts[0], parts[1], parts[2], parts[3]];
    if !lower_hex(version, 2) {
        return Err(fail("version must be 2 lowercase hex digits"));
    }
    if version == "ff" {
        return Err(fail("version ff is forbidden"));
    }
    if !lower_hex(trace_id, 32) {
        return Err(fail("trace-id must be 32 lowercase hex digits"));
    }
    if trace_id.bytes().all(|b| b == b'0') {
        return Err(fail("trace-id must not be all zeros"));
    }
    if !lower_hex(parent_id, 16) {
        return Err(fail("parent-id must be 16 lowercase hex digits"));
    }
    if parent_id.bytes().all(|b| b == b'0') {
        return Err(fail("parent-id must not be all zeros"));
    }
    if !lower_hex(flags, 2) {
        return Err(fail("trace-flags must be 2 lowercase hex digits"));
    }
    Ok(())
}

fn extension_name(name: &str) -> Result<(), EnvelopeError> {
    let fail = |reason| EnvelopeError::ExtensionName {
        name: name.to_string(),
        reason,
    };
    if name.is_empty() {
        return Err(fail("must not be empty"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    {
        return Err(fail(
            "only lowercase letters a-z and digits 0-9 are allowed",
        ));
    }
    if name.len() > MAX_EXTENSION_NAME_LEN {
        return Err(fail("longer than 20 characters"));
    }
    if name == "data" {
        return Err(fail("`data` is reserved"));
    }
    Ok(())
}

pub(super) fn validate(env: &Envelope) -> Result<(), EnvelopeError> {
    if env.specversion != SPEC_VERSION {
        return Err(EnvelopeError::SpecVersion(env.specversion.clone()));
    }
    non_empty("id", &env.id)?;
    non_empty("source", &env.source)?;
    if env.source.chars().any(char::is_whitespace) {
        return Err(EnvelopeError::WrongType {
            name: "source".into(),
            expected: "a URI reference without whitespace",
        });
    }
    non_empty("type", &env.event_type)?;
    let optional = [
        ("subject", &env.subject),
        ("datacontenttype", &env.datacontenttype),
        ("correlationid", &env.correlationid),
        ("causationid", &env.causationid),
        ("taskid", &env.taskid),
        ("contextid", &env.contextid),
        ("partitionkey", &env.partitionkey),
        ("replyto", &env.replyto),
    ];
    for (name, value) in optional {
        if let Some(v) = value {
            non_empty(name, v)?;
        }
    }
    timestamp("time", &env.time)?;
    timestamp("expirytime", &env.expirytime)?;
    if let Some(tp) = &env.traceparent {
        validate_traceparent(tp)?;
    }
    for (name, value) in &env.extensions {
        extension_name(name)?;
        match value {
            Value::String(s) if s.len() > MAX_ATTRIBUTE_LEN => {
                return Err(EnvelopeError::TooLong(name.clone()));
            }
            Value::String(_) | Value::Number(_) | Value::Bool(_) => {}
            _ => return Err(EnvelopeError::ExtensionValue(name.clone())),
        }
    }
    Ok(())
}
