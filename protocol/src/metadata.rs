//! Message metadata: short string pairs that travel with a message, as Azure Web PubSub
//! forwards them. A REST send gives them as `X-WebPubSub-Metadata-<key>` request headers, a
//! JSON-protocol client as a `metadata` object on `sendToGroup` and `event`; JSON receivers get
//! them as the `metadata` object of the message frame, an upstream handler as
//! `x-webpubsub-metadata-<key>` headers of the user event.
//!
//! The rules are the same wherever metadata comes from: at most [`MAX_ENTRIES`] entries; a key
//! is 1 to [`MAX_KEY_BYTES`] characters of an HTTP header name (RFC 9110 `tchar`), unique
//! ignoring case; a value is at most [`MAX_VALUE_BYTES`] of printable ASCII (what an HTTP
//! header can carry unchanged); keys and values together at most [`MAX_TOTAL_BYTES`].

use std::sync::Arc;

/// Most entries one message may carry.
pub const MAX_ENTRIES: usize = 64;
/// Longest key, in bytes.
pub const MAX_KEY_BYTES: usize = 256;
/// Longest value, in bytes.
pub const MAX_VALUE_BYTES: usize = 1024;
/// Most bytes of all keys and values together.
pub const MAX_TOTAL_BYTES: usize = 8 * 1024;
/// The prefix of the REST request headers (and upstream request headers) that carry metadata.
pub const HEADER_PREFIX: &str = "x-webpubsub-metadata-";

/// A message's metadata: validated pairs, in the order they were given. Cheap to clone, and one
/// pointer wide (none at all for the many messages without metadata).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Metadata(Option<Arc<Vec<(String, String)>>>);

/// Why metadata was refused.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum MetadataError {
    /// More than [`MAX_ENTRIES`] entries.
    #[error("metadata has more than {MAX_ENTRIES} entries")]
    TooMany,
    /// A key that is empty, too long, or has a character a header name cannot have.
    #[error(
        "metadata key '{0}' is invalid: use 1 to {MAX_KEY_BYTES} letters, digits or !#$%&'*+-.^_`|~"
    )]
    BadKey(String),
    /// The same key twice (keys compare ignoring case).
    #[error("metadata key '{0}' is given more than once")]
    DuplicateKey(String),
    /// A value that is too long or not printable ASCII.
    #[error(
        "metadata value of '{0}' is invalid: use at most {MAX_VALUE_BYTES} printable ASCII characters"
    )]
    BadValue(String),
    /// Keys and values together are too large.
    #[error("metadata is larger than {MAX_TOTAL_BYTES} bytes")]
    TooLarge,
    /// The `metadata` field is not an object of strings.
    #[error("'metadata' must be an object whose values are strings")]
    NotStrings,
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn key_ok(key: &str) -> bool {
    !key.is_empty() && key.len() <= MAX_KEY_BYTES && key.bytes().all(is_tchar)
}

fn value_ok(value: &str) -> bool {
    value.len() <= MAX_VALUE_BYTES && value.bytes().all(|b| (0x20..0x7f).contains(&b))
}

impl Metadata {
    /// Validates pairs into metadata.
    pub fn new(pairs: Vec<(String, String)>) -> Result<Self, MetadataError> {
        if pairs.len() > MAX_ENTRIES {
            return Err(MetadataError::TooMany);
        }
        let mut total = 0usize;
        for (i, (k, v)) in pairs.iter().enumerate() {
            if !key_ok(k) {
                let shown: String = k.chars().take(64).collect();
                return Err(MetadataError::BadKey(shown));
            }
            if pairs[..i].iter().any(|(o, _)| o.eq_ignore_ascii_case(k)) {
                return Err(MetadataError::DuplicateKey(k.clone()));
            }
            if !value_ok(v) {
                return Err(MetadataError::BadValue(k.clone()));
            }
            total += k.len() + v.len();
            if total > MAX_TOTAL_BYTES {
                return Err(MetadataError::TooLarge);
            }
        }
        Ok(Metadata((!pairs.is_empty()).then(|| Arc::new(pairs))))
    }

    /// Reads a JSON `metadata` object (string values only); `null` is no metadata.
    pub fn from_json(raw: &serde_json::value::RawValue) -> Result<Self, MetadataError> {
        if raw.get().trim() == "null" {
            return Ok(Metadata::default());
        }
        // A map keeps the entries in the order given; a repeated JSON key is refused below.
        let entries: Vec<(String, String)> = serde_json::from_str::<OrderedPairs>(raw.get())
            .map_err(|_| MetadataError::NotStrings)?
            .0;
        Metadata::new(entries)
    }

    /// The pairs, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs().iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    fn pairs(&self) -> &[(String, String)] {
        self.0.as_deref().map_or(&[], Vec::as_slice)
    }

    /// The value of `key` (ignoring case).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.pairs().len()
    }

    /// Bytes of keys and values.
    pub fn size(&self) -> usize {
        self.iter().map(|(k, v)| k.len() + v.len()).sum()
    }

    /// The metadata as a JSON object.
    pub fn to_json(&self) -> String {
        let mut out = String::with_capacity(self.size() + 6 * self.len() + 2);
        out.push('{');
        for (i, (k, v)) in self.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            // Keys are header-name characters and values printable ASCII: only `"` and `\`
            // need escaping, which serde_json does for a string.
            out.push_str(&serde_json::Value::from(k).to_string());
            out.push(':');
            out.push_str(&serde_json::Value::from(v).to_string());
        }
        out.push('}');
        out
    }
}

/// A JSON object read as its pairs in order (duplicates kept, for [`Metadata::new`] to refuse).
struct OrderedPairs(Vec<(String, String)>);

impl<'de> serde::Deserialize<'de> for OrderedPairs {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = OrderedPairs;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object of strings")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<OrderedPairs, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, String>()? {
                    if out.len() > MAX_ENTRIES {
                        return Err(serde::de::Error::custom("too many entries"));
                    }
                    out.push((k, v));
                }
                Ok(OrderedPairs(out))
            }
        }
        d.deserialize_map(Visit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::value::RawValue;

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn keys_values_and_sizes_are_bounded() {
        assert!(Metadata::new(pairs(&[("trace-id", "abc"), ("Tag", "")])).is_ok());
        assert_eq!(
            Metadata::new(pairs(&[("bad key", "v")])),
            Err(MetadataError::BadKey("bad key".into()))
        );
        assert!(Metadata::new(pairs(&[("", "v")])).is_err());
        assert!(Metadata::new(pairs(&[(&"k".repeat(257), "v")])).is_err());
        assert!(Metadata::new(pairs(&[(&"k".repeat(256), "v")])).is_ok());
        assert_eq!(
            Metadata::new(pairs(&[("k", "é")])),
            Err(MetadataError::BadValue("k".into()))
        );
        assert!(Metadata::new(pairs(&[("k", "a\nb")])).is_err());
        assert!(Metadata::new(pairs(&[("k", &"v".repeat(1025))])).is_err());
        assert_eq!(
            Metadata::new(pairs(&[("K", "1"), ("k", "2")])),
            Err(MetadataError::DuplicateKey("k".into()))
        );
        let many: Vec<_> = (0..65).map(|i| (format!("k{i}"), String::new())).collect();
        assert_eq!(Metadata::new(many), Err(MetadataError::TooMany));
        let big: Vec<_> = (0..9)
            .map(|i| (format!("k{i}"), "v".repeat(1000)))
            .collect();
        assert_eq!(Metadata::new(big), Err(MetadataError::TooLarge));
    }

    #[test]
    fn reads_and_writes_json_objects() {
        let raw = RawValue::from_string(r#"{"b":"2","a":"1"}"#.into()).unwrap();
        let m = Metadata::from_json(&raw).unwrap();
        assert_eq!(m.iter().collect::<Vec<_>>(), vec![("b", "2"), ("a", "1")]);
        assert_eq!(m.get("A"), Some("1"));
        assert_eq!(m.to_json(), r#"{"b":"2","a":"1"}"#);
        let quoted = Metadata::new(pairs(&[("q", r#"a"b\c"#)])).unwrap();
        assert_eq!(quoted.to_json(), r#"{"q":"a\"b\\c"}"#);
        let null = RawValue::from_string("null".into()).unwrap();
        assert!(Metadata::from_json(&null).unwrap().is_empty());
        for bad in [r#"{"a":1}"#, r#"["a"]"#, r#""s""#, r#"{"a":"1","a":"2"}"#] {
            let raw = RawValue::from_string(bad.into()).unwrap();
            assert!(Metadata::from_json(&raw).is_err(), "{bad}");
        }
    }
}
