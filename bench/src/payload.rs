//! The benchmark payload: a send timestamp and a sender id inside the message text.
//!
//! Every dialect carries the payload as an opaque string (a JSON string for Nerve and Socket.IO,
//! the whole frame for the raw server), so receivers find the fields by scanning the frame text
//! for markers instead of parsing each protocol. Latency is `receive time - send time`; all
//! processes run on one machine and share its wall clock.

use std::time::{SystemTime, UNIX_EPOCH};

const TS_MARK: &str = "@ts=";
const SRC_MARK: &str = "@src=";

/// Nanoseconds since the Unix epoch, the clock every benchmark process shares.
pub fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Builds a payload of exactly `size` bytes (or the minimum that fits the fields) that is safe
/// to embed in a JSON string without escaping.
pub fn build(ts_nanos: u64, src: u64, size: usize) -> String {
    let mut s = format!("{TS_MARK}{ts_nanos}{SRC_MARK}{src}@");
    while s.len() < size {
        s.push('x');
    }
    s
}

/// What a receiver learns from a frame that carries a payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// Send time, nanoseconds since the Unix epoch.
    pub ts_nanos: u64,
    /// The sending connection's global id.
    pub src: u64,
}

/// Finds the payload fields anywhere in a frame's text; `None` for frames without a payload
/// (acks, pings, system events).
pub fn parse(frame: &str) -> Option<Stamp> {
    let start = frame.find(TS_MARK)? + TS_MARK.len();
    let rest = &frame[start..];
    let (ts, rest) = leading_number(rest)?;
    let rest = rest.strip_prefix(SRC_MARK)?;
    let (src, _) = leading_number(rest)?;
    Some(Stamp { ts_nanos: ts, src })
}

fn leading_number(s: &str) -> Option<(u64, &str)> {
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let n = s[..end].parse().ok()?;
    Some((n, &s[end..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_inside_any_dialect_frame() {
        let p = build(1_700_000_000_123_456_789, 42, 64);
        assert_eq!(p.len(), 64);
        let want = Stamp {
            ts_nanos: 1_700_000_000_123_456_789,
            src: 42,
        };
        for frame in [
            p.clone(),
            format!(
                r#"{{"type":"message","from":"group","group":"g","dataType":"text","data":"{p}"}}"#
            ),
            format!(r#"42["message","{p}"]"#),
        ] {
            assert_eq!(parse(&frame), Some(want), "{frame}");
        }
    }

    #[test]
    fn small_size_still_carries_fields() {
        let p = build(5, 6, 1);
        assert_eq!(
            parse(&p),
            Some(Stamp {
                ts_nanos: 5,
                src: 6
            })
        );
    }

    #[test]
    fn frames_without_payload_are_ignored() {
        assert_eq!(parse(r#"{"type":"ack","ackId":1,"success":true}"#), None);
        assert_eq!(parse("2"), None);
        assert_eq!(parse("@ts=@src=1@"), None);
        assert_eq!(parse("@ts=12@src="), None);
    }
}
