//! Message payloads and their `dataType` (json, text, binary, and protobuf from the protobuf
//! subprotocols), validated once on the way in.
//!
//! A [`Payload`] keeps two forms: the JSON text that goes into `"data":…` of a JSON-protocol
//! frame, and the raw bytes a simple WebSocket client receives. Both are `Bytes`, shared by every
//! recipient, so a hub forwards data without ever parsing it into values. [`Data`] is the same
//! thing decoded, for programs that build or read the data itself.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use serde::Serialize;
use serde_json::Value;
use serde_json::value::RawValue;

use crate::metadata::Metadata;

/// How a payload's `data` is to be interpreted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataType {
    /// Any JSON value.
    Json,
    /// A string.
    Text,
    /// Bytes, base64 in JSON frames.
    Binary,
    /// An encoded `google.protobuf.Any`, sent by a protobuf-subprotocol client: base64 in JSON
    /// frames, the encoded bytes for simple clients.
    Protobuf,
}

impl DataType {
    /// Parses the protocol's `dataType` field (case-sensitive, as the service is).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "json" => Some(DataType::Json),
            "text" => Some(DataType::Text),
            "binary" => Some(DataType::Binary),
            "protobuf" => Some(DataType::Protobuf),
            _ => None,
        }
    }

    /// The protocol name of this data type.
    pub fn as_str(self) -> &'static str {
        match self {
            DataType::Json => "json",
            DataType::Text => "text",
            DataType::Binary => "binary",
            DataType::Protobuf => "protobuf",
        }
    }

    /// Maps an HTTP Content-Type (with optional `;charset=`) to a data type.
    pub fn from_content_type(ct: &str) -> Option<Self> {
        let essence = ct
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match essence.as_str() {
            "text/plain" => Some(DataType::Text),
            "application/json" => Some(DataType::Json),
            "application/octet-stream" => Some(DataType::Binary),
            _ => None,
        }
    }
}

/// Why a payload was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PayloadError {
    /// `dataType` is not json, text or binary.
    #[error("unsupported dataType '{0}'; expected json, text or binary")]
    UnknownDataType(String),
    /// `dataType` text with data that is not a JSON string.
    #[error("dataType 'text' requires data to be a string")]
    TextNotString,
    /// `dataType` binary with data that is not a base64 string.
    #[error("dataType 'binary' requires data to be a base64 string")]
    BinaryNotBase64,
    /// `dataType` protobuf outside the protobuf subprotocols.
    #[error("dataType 'protobuf' is sent by the protobuf subprotocols only")]
    ProtobufOutsideProtobuf,
    /// A body declared as JSON did not parse.
    #[error("body is not valid JSON: {0}")]
    InvalidJson(String),
    /// A text body was not UTF-8.
    #[error("text body is not valid UTF-8")]
    InvalidUtf8,
}

/// A validated message payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Payload {
    /// Its data type.
    pub data_type: DataType,
    /// The JSON text of the `data` field (a JSON value; a string for text and binary).
    pub json: Bytes,
    /// What a simple WebSocket client receives: raw text (JSON text for json) or raw bytes.
    pub raw: Bytes,
    /// The message's metadata (empty for most messages); simple clients do not get it.
    pub metadata: Metadata,
}

impl Payload {
    /// Builds a payload from a client frame's `data` (raw JSON) and `dataType`.
    pub fn from_frame(data_type: DataType, data: &RawValue) -> Result<Self, PayloadError> {
        let text = data.get();
        match data_type {
            DataType::Json => Ok(Payload::from_json_bytes(Bytes::copy_from_slice(
                text.as_bytes(),
            ))),
            DataType::Text => {
                let s: String =
                    serde_json::from_str(text).map_err(|_| PayloadError::TextNotString)?;
                Ok(Payload {
                    data_type,
                    json: Bytes::copy_from_slice(text.as_bytes()),
                    raw: Bytes::from(s.into_bytes()),
                    metadata: Metadata::default(),
                })
            }
            DataType::Binary | DataType::Protobuf => {
                let s: String =
                    serde_json::from_str(text).map_err(|_| PayloadError::BinaryNotBase64)?;
                let bytes = B64
                    .decode(s.as_bytes())
                    .map_err(|_| PayloadError::BinaryNotBase64)?;
                Ok(Payload {
                    data_type,
                    json: Bytes::copy_from_slice(text.as_bytes()),
                    raw: Bytes::from(bytes),
                    metadata: Metadata::default(),
                })
            }
        }
    }

    /// Builds a payload from an encoded `google.protobuf.Any`.
    pub fn protobuf(any: Bytes) -> Self {
        Payload {
            data_type: DataType::Protobuf,
            ..Payload::binary(any)
        }
    }

    /// Builds a payload from a text string.
    pub fn text(s: &str) -> Self {
        let json = serde_json::to_vec(s).unwrap_or_default();
        Payload {
            data_type: DataType::Text,
            json: Bytes::from(json),
            raw: Bytes::copy_from_slice(s.as_bytes()),
            metadata: Metadata::default(),
        }
    }

    /// Builds a payload from raw bytes.
    pub fn binary(b: Bytes) -> Self {
        let json = serde_json::to_vec(&B64.encode(&b)).unwrap_or_default();
        Payload {
            data_type: DataType::Binary,
            json: Bytes::from(json),
            raw: b,
            metadata: Metadata::default(),
        }
    }

    /// Builds a payload from an HTTP body of the given data type (REST sends, upstream replies).
    pub fn from_body(data_type: DataType, body: Bytes) -> Result<Self, PayloadError> {
        match data_type {
            DataType::Text => {
                let s = std::str::from_utf8(&body).map_err(|_| PayloadError::InvalidUtf8)?;
                Ok(Payload::text(s))
            }
            DataType::Binary => Ok(Payload::binary(body)),
            DataType::Protobuf => Ok(Payload::protobuf(body)),
            DataType::Json => {
                let v: &RawValue = serde_json::from_slice(&body)
                    .map_err(|e| PayloadError::InvalidJson(e.to_string()))?;
                Ok(Payload::from_json_bytes(Bytes::copy_from_slice(
                    v.get().as_bytes(),
                )))
            }
        }
    }

    /// Whether a simple client gets this as a binary frame (otherwise text).
    pub fn raw_is_binary(&self) -> bool {
        matches!(self.data_type, DataType::Binary | DataType::Protobuf)
    }

    /// Size used for outbox accounting.
    pub fn size(&self) -> usize {
        self.json.len().max(self.raw.len()) + self.metadata.size()
    }

    /// The same payload carrying `metadata`.
    pub fn with_metadata(mut self, metadata: Metadata) -> Self {
        self.metadata = metadata;
        self
    }

    /// A `json` payload holding `value` serialized.
    pub fn json_of<T: Serialize + ?Sized>(value: &T) -> Result<Self, PayloadError> {
        let json =
            serde_json::to_vec(value).map_err(|e| PayloadError::InvalidJson(e.to_string()))?;
        Ok(Payload::from_json_bytes(Bytes::from(json)))
    }

    /// A `json` payload holding `value`.
    pub fn from_value(value: &Value) -> Self {
        // A JSON value always serializes: its map keys are strings.
        Payload::json_of(value)
            .unwrap_or_else(|_| Payload::from_json_bytes(Bytes::from_static(b"null")))
    }

    fn from_json_bytes(json: Bytes) -> Self {
        Payload {
            data_type: DataType::Json,
            json: json.clone(),
            raw: json,
            metadata: Metadata::default(),
        }
    }

    /// The `data` as a JSON value (a string for text and base64 binary).
    pub fn to_value(&self) -> Result<Value, PayloadError> {
        serde_json::from_slice(&self.json).map_err(|e| PayloadError::InvalidJson(e.to_string()))
    }

    /// The data decoded.
    pub fn to_data(&self) -> Result<Data, PayloadError> {
        Ok(match self.data_type {
            DataType::Json => Data::Json(self.to_value()?),
            DataType::Text => Data::Text(
                String::from_utf8(self.raw.to_vec()).map_err(|_| PayloadError::InvalidUtf8)?,
            ),
            DataType::Binary | DataType::Protobuf => Data::Binary(self.raw.to_vec()),
        })
    }
}

/// A payload's data decoded: what a client hands over to send and gets back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Data {
    /// Any JSON value (`dataType: json`).
    Json(Value),
    /// A string (`dataType: text`).
    Text(String),
    /// Bytes (`dataType: binary`, base64 on the wire).
    Binary(Vec<u8>),
}

impl Data {
    /// The payload that carries this data.
    pub fn to_payload(&self) -> Payload {
        match self {
            Data::Json(v) => Payload::from_value(v),
            Data::Text(s) => Payload::text(s),
            Data::Binary(b) => Payload::binary(Bytes::copy_from_slice(b)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_string()).unwrap()
    }

    #[test]
    fn text_payload_unquotes_for_raw_clients() {
        let p = Payload::from_frame(DataType::Text, &raw(r#""hi \"x\"""#)).unwrap();
        assert_eq!(&p.json[..], br#""hi \"x\"""#);
        assert_eq!(&p.raw[..], br#"hi "x""#);
    }

    #[test]
    fn json_payload_keeps_quotes_for_strings() {
        let p = Payload::from_frame(DataType::Json, &raw(r#""s""#)).unwrap();
        assert_eq!(&p.raw[..], br#""s""#);
    }

    #[test]
    fn binary_payload_decodes_base64() {
        let p = Payload::from_frame(DataType::Binary, &raw(r#""AAEC""#)).unwrap();
        assert_eq!(&p.raw[..], &[0, 1, 2]);
        assert!(p.raw_is_binary());
        assert_eq!(
            Payload::from_frame(DataType::Binary, &raw(r#""!!""#)),
            Err(PayloadError::BinaryNotBase64)
        );
        assert_eq!(
            Payload::from_frame(DataType::Text, &raw("1")),
            Err(PayloadError::TextNotString)
        );
    }

    #[test]
    fn content_types_map_to_data_types() {
        assert_eq!(
            DataType::from_content_type("text/plain; charset=utf-8"),
            Some(DataType::Text)
        );
        assert_eq!(
            DataType::from_content_type("Application/JSON"),
            Some(DataType::Json)
        );
        assert_eq!(
            DataType::from_content_type("application/octet-stream"),
            Some(DataType::Binary)
        );
        assert_eq!(DataType::from_content_type("image/png"), None);
    }

    #[test]
    fn data_round_trips_through_the_wire_form() {
        for d in [
            Data::Json(serde_json::json!({"a": [1, 2]})),
            Data::Text("hi".into()),
            Data::Binary(vec![0, 1, 255]),
        ] {
            let p = d.to_payload();
            let data = RawValue::from_string(String::from_utf8(p.json.to_vec()).unwrap()).unwrap();
            let back = Payload::from_frame(p.data_type, &data).unwrap();
            assert_eq!(back.to_data(), Ok(d));
        }
        assert!(Payload::from_frame(DataType::Binary, &raw(r#""***""#)).is_err());
    }

    #[test]
    fn body_payloads() {
        let p = Payload::from_body(DataType::Json, Bytes::from_static(b" {\"a\":1} ")).unwrap();
        assert_eq!(&p.json[..], b"{\"a\":1}");
        assert!(Payload::from_body(DataType::Json, Bytes::from_static(b"{")).is_err());
        let b = Payload::from_body(DataType::Binary, Bytes::from_static(&[1, 2])).unwrap();
        assert_eq!(&b.json[..], b"\"AQI=\"");
    }
}
