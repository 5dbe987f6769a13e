//! A group message's offset: its place in the group's history, `<milliseconds>-<sequence>`,
//! ordered as the history is. Hubs that keep a group's history put it in the message frame's
//! `offset` field (clients that do not know it ignore it), and a client that comes back asks
//! for the messages after the last offset it saw (`joinGroup` with `after`).

use std::fmt;

/// A place in a group's history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Offset {
    /// Milliseconds since the Unix epoch when the message was kept.
    pub ms: u64,
    /// Its number among the messages kept in the same millisecond.
    pub seq: u64,
}

/// Why a text is not an offset.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not an offset: expected <milliseconds>-<sequence>, e.g. 1700000000000-0")]
pub struct OffsetError(pub String);

impl Offset {
    /// An offset from its two parts.
    pub const fn new(ms: u64, seq: u64) -> Self {
        Offset { ms, seq }
    }

    /// Parses `<ms>-<seq>` (a bare `<ms>` means `<ms>-0`).
    pub fn parse(text: &str) -> Result<Self, OffsetError> {
        let bad = || OffsetError(text.chars().take(64).collect());
        let (ms, seq) = text.split_once('-').unwrap_or((text, "0"));
        let number = |s: &str| {
            if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            s.parse::<u64>().ok()
        };
        Ok(Offset {
            ms: number(ms).ok_or_else(bad)?,
            seq: number(seq).ok_or_else(bad)?,
        })
    }

    /// The offset right after this one.
    pub fn next(self) -> Self {
        match self.seq.checked_add(1) {
            Some(seq) => Offset { ms: self.ms, seq },
            None => Offset {
                ms: self.ms.saturating_add(1),
                seq: 0,
            },
        }
    }
}

impl fmt::Display for Offset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

impl From<(u64, u64)> for Offset {
    fn from((ms, seq): (u64, u64)) -> Self {
        Offset { ms, seq }
    }
}

impl From<Offset> for (u64, u64) {
    fn from(o: Offset) -> Self {
        (o.ms, o.seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_parse_print_and_order() {
        let o = Offset::parse("1700000000000-3").unwrap();
        assert_eq!(o, Offset::new(1_700_000_000_000, 3));
        assert_eq!(o.to_string(), "1700000000000-3");
        assert_eq!(Offset::parse("5"), Ok(Offset::new(5, 0)));
        assert!(Offset::new(5, 9) < Offset::new(6, 0));
        assert_eq!(Offset::new(5, u64::MAX).next(), Offset::new(6, 0));
        for bad in [
            "",
            "-",
            "a-1",
            "1-",
            "1-2-3",
            "+1-0",
            "99999999999999999999999-0",
        ] {
            assert!(Offset::parse(bad).is_err(), "{bad}");
        }
    }
}
