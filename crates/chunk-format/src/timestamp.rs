//! Timestamps as Omi writes them: epoch seconds with exactly three decimals.
//!
//! A [`Timestamp`] is held as integer milliseconds since the Unix epoch. Its text form is the
//! one Python's `'%.3f'` produces for a non-negative float: `1786961845.727`. Parsing is strict:
//! digits only, no sign, no exponent, no leading zeros in the integer part (except a lone `0`),
//! exactly three decimals, at most [`Timestamp::MAX_SECONDS_DIGITS`] integer digits — so every
//! string that parses formats back to itself.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// A point in time with millisecond precision, as found in Omi object names.
///
/// Ordering is chronological. Construct one with [`Timestamp::from_millis`],
/// [`Timestamp::from_f64`] (exactly like Python's `'%.3f'`) or by parsing its text form.
///
/// ```
/// use chunk_format::Timestamp;
///
/// let ts: Timestamp = "1786961845.727".parse()?;
/// assert_eq!(ts.as_millis(), 1_786_961_845_727);
/// assert_eq!(ts.to_string(), "1786961845.727");
/// assert_eq!(Timestamp::from_f64(1786961845.727)?, ts);
/// # Ok::<(), chunk_format::TimestampError>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(u64);

/// Why a string or a float is not a valid [`Timestamp`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TimestampError {
    /// The text was empty.
    #[error("empty timestamp")]
    Empty,
    /// The text has no `.` followed by exactly three digits.
    #[error("timestamp {text:?} must have exactly three decimals (like 1786961845.727)")]
    Decimals {
        /// The offending text (truncated to 40 characters).
        text: String,
    },
    /// A character other than an ASCII digit (or the single `.`) was found.
    #[error("timestamp {text:?} may contain only ASCII digits and one '.'")]
    Character {
        /// The offending text (truncated to 40 characters).
        text: String,
    },
    /// The integer part has a leading zero (`01.000`), so it would not format back to itself.
    #[error("timestamp {text:?} has a leading zero in its integer part")]
    LeadingZero {
        /// The offending text (truncated to 40 characters).
        text: String,
    },
    /// The integer part has more digits than [`Timestamp::MAX_SECONDS_DIGITS`].
    #[error("timestamp {text:?} has more than {max} integer digits")]
    TooLong {
        /// The offending text (truncated to 40 characters).
        text: String,
        /// The limit.
        max: usize,
    },
    /// A float was NaN, infinite or negative (Python would format a sign or `nan`).
    #[error("float {value} is not a finite non-negative number of seconds")]
    NotFinite {
        /// The value as given.
        value: f64,
    },
    /// The value is beyond [`Timestamp::MAX`].
    #[error("timestamp out of range")]
    OutOfRange,
}

/// Keeps error messages bounded whatever the input length.
fn clip(text: &str) -> String {
    text.chars().take(40).collect()
}

impl Timestamp {
    /// The largest number of integer (seconds) digits accepted when parsing: 13, which covers
    /// every epoch second below 10^13 (about the year 318857).
    pub const MAX_SECONDS_DIGITS: usize = 13;

    /// The largest representable timestamp: `9999999999999.999`.
    pub const MAX: Timestamp = Timestamp(10_000_000_000_000 * 1000 - 1);

    /// The Unix epoch, `0.000`.
    pub const ZERO: Timestamp = Timestamp(0);

    /// Makes a timestamp from milliseconds since the epoch; `None` above [`Timestamp::MAX`].
    pub const fn from_millis(millis: u64) -> Option<Timestamp> {
        if millis > Self::MAX.0 {
            None
        } else {
            Some(Timestamp(millis))
        }
    }

    /// Milliseconds since the epoch.
    pub const fn as_millis(self) -> u64 {
        self.0
    }

    /// Converts epoch seconds given as a float exactly as Python's `'%.3f' % x` does: the exact
    /// binary value is rounded to three decimals, ties to even.
    ///
    /// Fails for NaN, infinities, negative values (including `-0.0`, which Python formats with a
    /// sign) and values above [`Timestamp::MAX`].
    pub fn from_f64(seconds: f64) -> Result<Timestamp, TimestampError> {
        if !seconds.is_finite() || seconds.is_sign_negative() {
            return Err(TimestampError::NotFinite { value: seconds });
        }
        if seconds >= 1e13 {
            return Err(TimestampError::OutOfRange);
        }
        // Rust's `{:.3}` rounds the exact binary value half to even, exactly like CPython's
        // `'%.3f'` (checked in the compat doc §1.3 and by a property test against an exact
        // rational reference). Formatting is then parsed by the strict parser.
        let text = format!("{seconds:.3}");
        match text.parse::<Timestamp>() {
            Ok(ts) => Ok(ts),
            // 9999999999999.9995 rounds up to 10000000000000.000: out of range, not a bad float.
            Err(TimestampError::TooLong { .. }) => Err(TimestampError::OutOfRange),
            Err(other) => Err(other),
        }
    }

    /// The float Python's `float(str(self))` gives: the nearest `f64` to the decimal value.
    ///
    /// For timestamps below 2^43 seconds (8796093022208.000, about the year 280 700) this is
    /// the inverse of [`Timestamp::from_f64`]: there the spacing of `f64` values is at most
    /// 2^-10 s, so the nearest float is within half a millisecond. Above that, neighbouring
    /// milliseconds can share a float (`9999999999902.923` comes back as `…902.924`).
    pub fn as_f64(self) -> f64 {
        const EXACT: u64 = 1 << 53;
        if self.0 < EXACT {
            // Both operands are exact in f64 and IEEE division is correctly rounded, so this
            // equals parsing the decimal text.
            self.0 as f64 / 1000.0
        } else {
            // Above 2^53 ms (about the year 287 000) `millis as f64` would round first and the
            // division round again; parse the text instead (Rust's parser is correctly rounded).
            let divided = self.0 as f64 / 1000.0;
            self.to_string().parse().unwrap_or(divided)
        }
    }

    /// Adds a duration, truncated to whole milliseconds; `None` past [`Timestamp::MAX`].
    pub fn checked_add(self, duration: Duration) -> Option<Timestamp> {
        let add = u64::try_from(duration.as_millis()).ok()?;
        Timestamp::from_millis(self.0.checked_add(add)?)
    }

    /// Subtracts a duration, truncated to whole milliseconds; `None` before the epoch.
    pub fn checked_sub(self, duration: Duration) -> Option<Timestamp> {
        let sub = u64::try_from(duration.as_millis()).ok()?;
        Some(Timestamp(self.0.checked_sub(sub)?))
    }

    /// Adds whole milliseconds, saturating at [`Timestamp::MAX`].
    pub fn saturating_add_millis(self, millis: u64) -> Timestamp {
        Timestamp(self.0.saturating_add(millis).min(Self::MAX.0))
    }

    /// The time elapsed from `earlier` to `self`; `None` if `earlier` is later than `self`.
    pub fn duration_since(self, earlier: Timestamp) -> Option<Duration> {
        self.0.checked_sub(earlier.0).map(Duration::from_millis)
    }

    /// Signed difference `self - other` in milliseconds.
    pub fn millis_since(self, other: Timestamp) -> i64 {
        // Both values are below 10^16, so the difference always fits in i64.
        self.0 as i64 - other.0 as i64
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:03}", self.0 / 1000, self.0 % 1000)
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Timestamp({self})")
    }
}

impl FromStr for Timestamp {
    type Err = TimestampError;

    fn from_str(text: &str) -> Result<Timestamp, TimestampError> {
        if text.is_empty() {
            return Err(TimestampError::Empty);
        }
        let Some((int, frac)) = text.split_once('.') else {
            return Err(TimestampError::Decimals { text: clip(text) });
        };
        if !int.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
            return Err(TimestampError::Character { text: clip(text) });
        }
        if frac.len() != 3 || int.is_empty() {
            return Err(TimestampError::Decimals { text: clip(text) });
        }
        if int.len() > Self::MAX_SECONDS_DIGITS {
            return Err(TimestampError::TooLong {
                text: clip(text),
                max: Self::MAX_SECONDS_DIGITS,
            });
        }
        if int.len() > 1 && int.starts_with('0') {
            return Err(TimestampError::LeadingZero { text: clip(text) });
        }
        let digits = |s: &str| {
            s.bytes()
                .fold(0u64, |acc, b| acc * 10 + u64::from(b - b'0'))
        };
        // At most 13 + 3 digits: fits in u64 without overflow.
        Ok(Timestamp(digits(int) * 1000 + digits(frac)))
    }
}

impl serde::Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_python_percent_3f() {
        // Pairs checked against CPython 3.11 '%.3f' (compat doc §1.3).
        for (value, text) in [
            (1000.0625, "1000.062"),
            (0.0025, "0.003"),
            (1000.0005, "1000.000"),
            (1700000000.1234, "1700000000.123"),
            (1786961845.727, "1786961845.727"),
            (0.0, "0.000"),
        ] {
            assert_eq!(
                Timestamp::from_f64(value).unwrap().to_string(),
                text,
                "{value}"
            );
        }
    }

    #[test]
    fn rejects_bad_floats() {
        for value in [
            f64::NAN,
            f64::INFINITY,
            -1.0,
            -0.0,
            1e13,
            9_999_999_999_999.999_6,
        ] {
            assert!(Timestamp::from_f64(value).is_err(), "{value}");
        }
        // The largest float below 10^13 is 9999999999999.998046875.
        assert_eq!(
            Timestamp::from_f64(9_999_999_999_999.998)
                .unwrap()
                .to_string(),
            "9999999999999.998"
        );
    }

    #[test]
    fn strict_parse() {
        for bad in [
            "",
            "1",
            "1.",
            "1.00",
            "1.0000",
            ".000",
            "01.000",
            "+1.000",
            "-1.000",
            "1e3.000",
            "1.0e0",
            " 1.000",
            "1.000 ",
            "1,000",
            "1.00a",
            "١.٠٠٠",
            "12345678901234.000",
            "1..000",
            "1.000.000",
        ] {
            assert!(bad.parse::<Timestamp>().is_err(), "{bad:?} should fail");
        }
        assert_eq!("0.000".parse::<Timestamp>().unwrap(), Timestamp::ZERO);
        assert_eq!(
            "9999999999999.999".parse::<Timestamp>().unwrap(),
            Timestamp::MAX
        );
    }

    #[test]
    fn as_f64_is_the_nearest_float() {
        let ts: Timestamp = "1786961845.727".parse().unwrap();
        assert_eq!(ts.as_f64(), 1786961845.727_f64);
        assert_eq!(
            ts.as_f64(),
            "1786961845.727".parse::<f64>().unwrap(),
            "division must match decimal parsing"
        );
        // Above 2^53 ms, dividing `millis as f64` would round twice and miss by one ulp.
        let huge: Timestamp = "9999999999910.975".parse().unwrap();
        assert_eq!(huge.as_f64(), 9_999_999_999_910.975_f64);
        assert_ne!(huge.as_f64(), huge.as_millis() as f64 / 1000.0);
    }

    #[test]
    fn arithmetic() {
        let ts: Timestamp = "10.000".parse().unwrap();
        let later = ts.checked_add(Duration::from_millis(5_500)).unwrap();
        assert_eq!(later.to_string(), "15.500");
        assert_eq!(later.duration_since(ts), Some(Duration::from_millis(5_500)));
        assert_eq!(ts.duration_since(later), None);
        assert_eq!(ts.millis_since(later), -5_500);
        assert_eq!(ts.checked_sub(Duration::from_secs(11)), None);
        assert_eq!(Timestamp::MAX.checked_add(Duration::from_millis(1)), None);
        assert_eq!(Timestamp::MAX.saturating_add_millis(5), Timestamp::MAX);
    }
}
