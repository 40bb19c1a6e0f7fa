//! A message's position: the Redis stream id the fan-out log gave it (`<ms>-<seq>`).
//! One id per message, used in every stream that holds it, so positions of different
//! rooms compare: a client's single offset says where it is in all of its rooms.

use std::{fmt, str::FromStr};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Offset {
    /// Redis server time (ms since the epoch) when the message was appended.
    pub ms: u64,
    pub seq: u64,
}

impl Offset {
    pub const ZERO: Offset = Offset { ms: 0, seq: 0 };
}

/// Why a string is not an offset.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a message offset (expected <milliseconds>-<sequence>): {0:?}")]
pub struct BadOffset(String);

impl FromStr for Offset {
    type Err = BadOffset;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadOffset(s.chars().take(64).collect());
        let (ms, seq) = s.split_once('-').ok_or_else(bad)?;
        let digits =
            |p: &str| !p.is_empty() && p.len() <= 20 && p.bytes().all(|b| b.is_ascii_digit());
        if !digits(ms) || !digits(seq) {
            return Err(bad());
        }
        Ok(Offset {
            ms: ms.parse().map_err(|_| bad())?,
            seq: seq.parse().map_err(|_| bad())?,
        })
    }
}

impl fmt::Display for Offset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_parse_strictly_and_order_by_time_then_sequence() {
        let cases: &[(&str, Option<(u64, u64)>)] = &[
            ("1700000000000-0", Some((1_700_000_000_000, 0))),
            ("0-0", Some((0, 0))),
            ("5-18446744073709551615", Some((5, u64::MAX))),
            ("5-18446744073709551616", None),
            ("", None),
            ("5", None),
            ("5-", None),
            ("-5", None),
            ("+5-1", None),
            ("5-1-2", None),
            (" 5-1", None),
            ("five-1", None),
        ];
        for (text, want) in cases {
            let got = text.parse::<Offset>().ok().map(|o| (o.ms, o.seq));
            assert_eq!(got, *want, "case {text:?}");
        }
        let a: Offset = "10-5".parse().expect("valid");
        let b: Offset = "11-0".parse().expect("valid");
        let c: Offset = "11-1".parse().expect("valid");
        assert!(a < b && b < c);
        assert_eq!(c.to_string(), "11-1");
    }
}
