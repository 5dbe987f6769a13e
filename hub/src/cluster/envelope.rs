//! The wire form of what one node sends another through Redis: a message with its recipients
//! (already encoded, so a message is serialized once in the whole cluster) or a command.
//!
//! Layout: one JSON header line, then the frame, the payload's JSON text and its raw bytes,
//! back to back, their lengths in the header. Binary payloads travel without base64.

use bytes::Bytes;
use nerve_protocol::{DataType, Metadata, Payload};
use serde::{Deserialize, Serialize};

use super::{Command, Scope, Target};

/// A message on its way to other nodes, as the origin encoded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Who gets it.
    pub target: Target,
    /// Who is left out.
    pub scope: Scope,
    /// The JSON-protocol frame.
    pub frame: String,
    /// The payload (for simple clients and filters).
    pub payload: Payload,
    /// For a group message: the publishing node process and the message's number there
    /// (`registry::Published`), so that node knows its own message in the group's history.
    pub published: Option<(u64, u64)>,
    /// When the message expires (Unix milliseconds), if it was sent with a TTL.
    pub expires_at: Option<u64>,
}

/// What travels between nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// A message to deliver.
    Message(Message),
    /// A command to run against the local registry.
    Command(Command),
}

/// One node-to-node envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// The sending node.
    pub origin: String,
    /// The hub (lowercase).
    pub hub: String,
    /// The content.
    pub body: Body,
}

#[derive(Serialize, Deserialize)]
struct Header {
    o: String,
    h: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    t: Option<Target>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    s: Option<Scope>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    d: Option<String>,
    #[serde(default)]
    fl: usize,
    #[serde(default)]
    jl: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    c: Option<Command>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    q: Option<(u64, u64)>,
    /// The payload's metadata, when it has any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    m: Option<Vec<(String, String)>>,
    /// The message's expiry (Unix milliseconds), when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    x: Option<u64>,
}

/// Why an envelope could not be read.
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    /// The header line is missing or not the expected JSON.
    #[error("bad envelope header: {0}")]
    Header(String),
    /// The lengths do not fit the bytes.
    #[error("truncated envelope")]
    Truncated,
}

impl Envelope {
    /// Encodes the envelope.
    pub fn encode(&self) -> Vec<u8> {
        let mut header = Header {
            o: self.origin.clone(),
            h: self.hub.clone(),
            t: None,
            s: None,
            d: None,
            fl: 0,
            jl: 0,
            c: None,
            q: None,
            m: None,
            x: None,
        };
        let mut tail: Vec<&[u8]> = Vec::new();
        match &self.body {
            Body::Message(m) => {
                header.t = Some(m.target.clone());
                header.s = Some(m.scope.clone()).filter(|s| !s.is_empty());
                header.d = Some(m.payload.data_type.as_str().to_string());
                header.fl = m.frame.len();
                header.jl = m.payload.json.len();
                header.q = m.published;
                header.x = m.expires_at;
                header.m = (!m.payload.metadata.is_empty()).then(|| {
                    m.payload
                        .metadata
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect()
                });
                tail.extend([m.frame.as_bytes(), &m.payload.json, &m.payload.raw]);
            }
            Body::Command(c) => header.c = Some(c.clone()),
        }
        let mut out = serde_json::to_vec(&header).unwrap_or_default();
        out.push(b'\n');
        for t in tail {
            out.extend_from_slice(t);
        }
        out
    }

    /// Decodes an envelope.
    pub fn decode(bytes: &[u8]) -> Result<Self, EnvelopeError> {
        let nl = bytes
            .iter()
            .position(|b| *b == b'\n')
            .ok_or_else(|| EnvelopeError::Header("no header line".into()))?;
        let header: Header = serde_json::from_slice(&bytes[..nl])
            .map_err(|e| EnvelopeError::Header(e.to_string()))?;
        let rest = &bytes[nl + 1..];
        let body = match (header.c, header.t) {
            (Some(c), _) => Body::Command(c),
            (None, Some(target)) => {
                let data_type = header
                    .d
                    .as_deref()
                    .and_then(DataType::parse)
                    .ok_or_else(|| EnvelopeError::Header("unknown data type".into()))?;
                if header.fl.saturating_add(header.jl) > rest.len() {
                    return Err(EnvelopeError::Truncated);
                }
                let (frame, rest) = rest.split_at(header.fl);
                let (json, raw) = rest.split_at(header.jl);
                let frame = String::from_utf8(frame.to_vec())
                    .map_err(|_| EnvelopeError::Header("frame is not UTF-8".into()))?;
                let metadata = Metadata::new(header.m.unwrap_or_default())
                    .map_err(|e| EnvelopeError::Header(e.to_string()))?;
                Body::Message(Message {
                    target,
                    scope: header.s.unwrap_or_default(),
                    frame,
                    payload: Payload {
                        data_type,
                        json: Bytes::copy_from_slice(json),
                        raw: Bytes::copy_from_slice(raw),
                        metadata,
                    },
                    published: header.q,
                    expires_at: header.x,
                })
            }
            (None, None) => {
                return Err(EnvelopeError::Header("neither message nor command".into()));
            }
        };
        Ok(Envelope {
            origin: header.o,
            hub: header.h,
            body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_and_commands_round_trip() {
        let m = Envelope {
            origin: "n1".into(),
            hub: "chat".into(),
            body: Body::Message(Message {
                target: Target::Group("g\n{x}".into()),
                scope: Scope {
                    excluded: vec!["c1".into()],
                    filter: Some("userId eq 'a'".into()),
                },
                frame: r#"{"type":"message","data":"hi"}"#.into(),
                payload: Payload::binary(Bytes::from_static(&[0, 10, 255]))
                    .with_metadata(Metadata::new(vec![("trace".into(), "t-1".into())]).unwrap()),
                published: Some((1_700_000_000_000, 42)),
                expires_at: Some(1_700_000_300_000),
            }),
        };
        assert_eq!(Envelope::decode(&m.encode()).unwrap(), m);
        let c = Envelope {
            origin: "n2".into(),
            hub: "chat".into(),
            body: Body::Command(Command::Close {
                selector: super::super::Selector::User("u".into()),
                reason: "bye".into(),
                excluded: vec![],
            }),
        };
        assert_eq!(Envelope::decode(&c.encode()).unwrap(), c);
        assert!(Envelope::decode(b"garbage").is_err());
        let mut bad = m.encode();
        bad.truncate(bad.len() - 40);
        assert!(Envelope::decode(&bad).is_err());
    }
}
