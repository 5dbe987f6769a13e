//! Wall-clock helpers: the bus stamps and compares times as RFC 3339 strings (CloudEvents `time`,
//! `expirytime`) and as Unix milliseconds (Redis scores, leases), and this is the one place that
//! converts between them.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Formats Unix milliseconds as an RFC 3339 UTC timestamp with millisecond precision.
pub fn format_ms(ms: u64) -> String {
    let nanos = i128::from(ms) * 1_000_000;
    let t = OffsetDateTime::from_unix_timestamp_nanos(nanos).unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let t = t
        .replace_nanosecond((ms % 1000) as u32 * 1_000_000)
        .unwrap_or(t);
    t.format(&Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_string())
}

/// The current time as an RFC 3339 UTC timestamp.
pub fn now_rfc3339() -> String {
    format_ms(now_ms())
}

/// Parses an RFC 3339 timestamp into Unix milliseconds; `None` when it is not RFC 3339.
pub fn parse_ms(value: &str) -> Option<u64> {
    let t = OffsetDateTime::parse(value, &Rfc3339).ok()?;
    let ms = t.unix_timestamp_nanos() / 1_000_000;
    u64::try_from(ms).ok()
}

/// `now + d` as an RFC 3339 timestamp.
pub fn rfc3339_after(d: Duration) -> String {
    format_ms(now_ms().saturating_add(d.as_millis() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_milliseconds() {
        let ms = 1_764_000_000_123;
        let s = format_ms(ms);
        assert!(s.ends_with(".123Z"), "{s}");
        assert_eq!(parse_ms(&s), Some(ms));
    }

    #[test]
    fn accepts_offsets_and_rejects_garbage() {
        assert_eq!(
            parse_ms("1970-01-01T01:00:00+01:00"),
            Some(0),
            "offsets are honoured"
        );
        assert_eq!(parse_ms("2026-13-01T00:00:00Z"), None);
        assert_eq!(parse_ms("yesterday"), None);
    }
}
