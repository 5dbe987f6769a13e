//! A JSON object written field by field into one string. Frames are flat objects whose keys are
//! fixed ASCII names, so writing them directly costs one allocation per frame and lets data that
//! is already JSON (a payload) go in without being parsed again.

use std::fmt::Write;

/// An object being written; `finish` closes it.
pub(super) struct Object {
    out: String,
}

impl Object {
    /// An object whose first field is `"type": kind`.
    pub(super) fn new(kind: &str, capacity: usize) -> Object {
        Object::untyped(capacity + 16).str("type", kind)
    }

    /// An object with no fields yet.
    pub(super) fn untyped(capacity: usize) -> Object {
        let mut out = String::with_capacity(capacity + 2);
        out.push('{');
        Object { out }
    }

    /// A string field.
    pub(super) fn str(mut self, key: &str, value: &str) -> Object {
        self.key(key);
        push_str(&mut self.out, value);
        self
    }

    /// A string field when there is a value.
    pub(super) fn opt_str(self, key: &str, value: Option<&str>) -> Object {
        match value {
            Some(v) => self.str(key, v),
            None => self,
        }
    }

    /// A number field.
    pub(super) fn u64(mut self, key: &str, value: u64) -> Object {
        self.key(key);
        // Writing into a String cannot fail.
        let _ = write!(self.out, "{value}");
        self
    }

    /// A number field when there is a value.
    pub(super) fn opt_u64(self, key: &str, value: Option<u64>) -> Object {
        match value {
            Some(v) => self.u64(key, v),
            None => self,
        }
    }

    /// A boolean field.
    pub(super) fn bool(mut self, key: &str, value: bool) -> Object {
        self.key(key);
        self.out.push_str(if value { "true" } else { "false" });
        self
    }

    /// A field whose value is JSON text already (a payload's data).
    pub(super) fn raw(mut self, key: &str, json: &str) -> Object {
        self.key(key);
        self.out.push_str(json);
        self
    }

    /// The JSON text.
    pub(super) fn finish(mut self) -> String {
        self.out.push('}');
        self.out
    }

    fn key(&mut self, key: &str) {
        if self.out.len() > 1 {
            self.out.push(',');
        }
        self.out.push('"');
        self.out.push_str(key);
        self.out.push_str("\":");
    }
}

/// Writes `s` as a JSON string, escaped as serde_json escapes it, without a temporary string:
/// most frame strings (names, ids) need no escaping at all and are copied whole.
fn push_str(out: &mut String, s: &str) {
    out.push('"');
    let mut plain = 0;
    for (i, b) in s.bytes().enumerate() {
        let escape = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0x00..=0x1f => "",
            _ => continue,
        };
        // Only ASCII bytes are escaped, so every cut falls on a char boundary.
        out.push_str(&s[plain..i]);
        if escape.is_empty() {
            // Writing into a String cannot fail.
            let _ = write!(out, "\\u{b:04x}");
        } else {
            out.push_str(escape);
        }
        plain = i + 1;
    }
    out.push_str(&s[plain..]);
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_escaped_as_serde_json_escapes_them() {
        for s in [
            "",
            "plain",
            "q\"uote",
            "back\\slash",
            "\n\r\t\u{8}\u{c}",
            "\u{1}\u{1f}\u{7f}",
            "é日本🎉",
            "a\"é\n",
        ] {
            let mut out = String::new();
            push_str(&mut out, s);
            assert_eq!(out, serde_json::to_string(s).unwrap(), "{s:?}");
        }
    }

    #[test]
    fn writes_valid_json() {
        let text = Object::new("t\"", 0)
            .str("s", "a\"b\n")
            .opt_str("none", None)
            .u64("n", 7)
            .bool("b", false)
            .raw("r", r#"{"x":[1]}"#)
            .finish();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type": "t\"", "s": "a\"b\n", "n": 7, "b": false, "r": {"x": [1]}})
        );
    }
}
