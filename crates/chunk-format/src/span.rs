//! Omi's v2 "audio timeline" span: the authoritative start, length and rate of a batch object,
//! kept in the object's user metadata (GCS custom metadata, S3 `x-amz-meta-*`, Azure metadata).
//!
//! Omi's newest batch upload sets three keys when its chunks carry a span
//! (`omi-layout.md` §1.4):
//!
//! | key | value |
//! |---|---|
//! | `v2_start` | the start in epoch seconds, as Python's `repr(float)` (shortest round trip) |
//! | `v2_samples` | the object's sample count, a decimal integer |
//! | `v2_sample_rate` | samples per second, a decimal integer |
//!
//! A span needs all three, with samples and rate above zero; anything else is no span, as in
//! Omi. [`OmiSpan::from_metadata`] is total: every input gives a span or `None`.
//!
//! ```
//! use chunk_format::span::OmiSpan;
//!
//! let span = OmiSpan::new(1786961845.7271, 960_000, 16_000).unwrap();
//! let pairs = span.metadata();
//! assert_eq!(pairs[0], ("v2_start", "1786961845.7271".to_owned()));
//! let back = OmiSpan::from_metadata(|key| {
//!     pairs.iter().find(|(k, _)| *k == key).map(|(_, v)| v.as_str())
//! });
//! assert_eq!(back, Some(span));
//! ```

/// Metadata key of the span's start.
pub const V2_START: &str = "v2_start";
/// Metadata key of the span's sample count.
pub const V2_SAMPLES: &str = "v2_samples";
/// Metadata key of the span's sample rate.
pub const V2_SAMPLE_RATE: &str = "v2_sample_rate";
/// The three keys, in the order [`OmiSpan::metadata`] gives them.
pub const SPAN_KEYS: [&str; 3] = [V2_START, V2_SAMPLES, V2_SAMPLE_RATE];

/// Longest metadata value [`OmiSpan::from_metadata`] looks at; longer values are no span.
/// (`repr` of any f64 takes at most 24 characters.)
const MAX_VALUE_LEN: usize = 64;

/// The authoritative timing of one Omi batch object.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct OmiSpan {
    /// Start of the object's audio, in epoch seconds (finite).
    pub start: f64,
    /// Samples the object holds (above zero).
    pub samples: u64,
    /// Samples per second (above zero).
    pub sample_rate: u32,
}

impl Eq for OmiSpan {}

/// Why [`OmiSpan::new`] refused a span.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SpanError {
    /// The start is NaN or infinite.
    #[error("span start {0} is not a finite number of seconds")]
    Start(f64),
    /// Zero samples.
    #[error("span has no samples")]
    NoSamples,
    /// A zero sample rate.
    #[error("span sample rate is zero")]
    NoRate,
}

impl OmiSpan {
    /// A span starting at `start` seconds with `samples` samples at `sample_rate`; refuses
    /// what Omi's parser would treat as no span (and a non-finite start).
    pub fn new(start: f64, samples: u64, sample_rate: u32) -> Result<OmiSpan, SpanError> {
        if !start.is_finite() {
            return Err(SpanError::Start(start));
        }
        if samples == 0 {
            return Err(SpanError::NoSamples);
        }
        if sample_rate == 0 {
            return Err(SpanError::NoRate);
        }
        Ok(OmiSpan {
            start,
            samples,
            sample_rate,
        })
    }

    /// The span read from an object's user metadata, `get` giving the value of a key; `None`
    /// when any key is missing or does not parse, or samples or rate is zero (Omi's rule).
    ///
    /// Values parse as Omi's Python does (`float()`, `int()`), except that a non-finite start
    /// and digit separators (`1_000`) are no span here.
    pub fn from_metadata<'a>(get: impl Fn(&str) -> Option<&'a str>) -> Option<OmiSpan> {
        let value = |key: &str| get(key).filter(|v| v.len() <= MAX_VALUE_LEN).map(str::trim);
        let start: f64 = value(V2_START)?.parse().ok()?;
        let samples: u64 = value(V2_SAMPLES)?.parse().ok()?;
        let sample_rate: u32 = value(V2_SAMPLE_RATE)?.parse().ok()?;
        OmiSpan::new(start, samples, sample_rate).ok()
    }

    /// The three metadata pairs exactly as Omi writes them.
    pub fn metadata(&self) -> [(&'static str, String); 3] {
        [
            (V2_START, python_repr(self.start)),
            (V2_SAMPLES, self.samples.to_string()),
            (V2_SAMPLE_RATE, self.sample_rate.to_string()),
        ]
    }

    /// The audio's duration in seconds.
    pub fn duration_secs(&self) -> f64 {
        self.samples as f64 / f64::from(self.sample_rate)
    }

    /// The PCM16 mono bytes the span's samples take.
    pub fn pcm_bytes(&self) -> u64 {
        self.samples.saturating_mul(2)
    }
}

/// Python's `repr(float)`: the shortest decimal that reads back as `x`, in fixed notation
/// with at least one fractional digit for decimal exponents -4 to 15, else as `d.ddde±XX`.
pub fn python_repr(x: f64) -> String {
    if x.is_nan() {
        return "nan".to_owned();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf" } else { "-inf" }.to_owned();
    }
    let sign = if x.is_sign_negative() { "-" } else { "" };
    if x == 0.0 {
        return format!("{sign}0.0");
    }
    // Rust's `{:e}` gives the same shortest round-trip digits: "d.ddde<exp>".
    let scientific = format!("{:e}", x.abs());
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((&scientific, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let decimal_point = exponent + 1; // value = 0.DIGITS × 10^decimal_point
    if (-3..=16).contains(&decimal_point) {
        let len = digits.len() as i32;
        let fixed = if decimal_point <= 0 {
            format!("0.{}{digits}", "0".repeat((-decimal_point) as usize))
        } else if decimal_point >= len {
            format!("{digits}{}.0", "0".repeat((decimal_point - len) as usize))
        } else {
            let (int, frac) = digits.split_at(decimal_point as usize);
            format!("{int}.{frac}")
        };
        format!("{sign}{fixed}")
    } else {
        let (first, rest) = digits.split_at(1);
        let dot = if rest.is_empty() { "" } else { "." };
        let exp_sign = if exponent < 0 { '-' } else { '+' };
        format!(
            "{sign}{first}{dot}{rest}e{exp_sign}{:02}",
            exponent.unsigned_abs()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repr_matches_python() {
        // Each right-hand side printed by CPython 3.11 `repr(float(...))`.
        for (x, python) in [
            (1786961845.727, "1786961845.727"),
            (1786961845.7271234, "1786961845.7271235"),
            (1000.0, "1000.0"),
            (0.1, "0.1"),
            (-2.5, "-2.5"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.5e-7, "1.5e-07"),
            (1e15, "1000000000000000.0"),
            (1e16, "1e+16"),
            (1.2345e16, "1.2345e+16"),
            (1e100, "1e+100"),
            (123456789012345678.0, "1.2345678901234568e+17"),
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (5e-324, "5e-324"),
        ] {
            assert_eq!(python_repr(x), python, "{x:e}");
            assert_eq!(python.parse::<f64>().ok(), Some(x));
        }
    }

    fn parse(pairs: &[(&str, &str)]) -> Option<OmiSpan> {
        OmiSpan::from_metadata(|key| pairs.iter().find(|(k, _)| *k == key).map(|(_, v)| *v))
    }

    #[test]
    fn parsing_follows_omi_rules() {
        let full = [
            ("v2_start", "1786961845.727"),
            ("v2_samples", "960000"),
            ("v2_sample_rate", "16000"),
        ];
        assert_eq!(
            parse(&full),
            Some(OmiSpan {
                start: 1786961845.727,
                samples: 960_000,
                sample_rate: 16_000
            })
        );
        // All three are needed.
        for skip in 0..3 {
            let partial: Vec<_> = full
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != skip)
                .map(|(_, p)| *p)
                .collect();
            assert_eq!(parse(&partial), None);
        }
        // Zero or negative samples or rate, garbage, a non-finite start, a huge value: no span.
        for (key, bad) in [
            ("v2_samples", "0"),
            ("v2_samples", "-5"),
            ("v2_sample_rate", "0"),
            ("v2_sample_rate", "16k"),
            ("v2_start", "nan"),
            ("v2_start", "inf"),
            ("v2_start", ""),
            ("v2_start", "1e400"),
        ] {
            let pairs: Vec<_> = full
                .iter()
                .map(|(k, v)| (*k, if *k == key { bad } else { *v }))
                .collect();
            assert_eq!(parse(&pairs), None, "{key}={bad}");
        }
        let long = "1".repeat(MAX_VALUE_LEN + 1);
        assert_eq!(
            parse(&[
                ("v2_start", "1.0"),
                ("v2_samples", &long),
                ("v2_sample_rate", "16000")
            ]),
            None
        );
        // Python's float()/int() accept surrounding space and a plus sign.
        assert_eq!(
            parse(&[
                ("v2_start", " +1000 "),
                ("v2_samples", "+2"),
                ("v2_sample_rate", "8000\n")
            ]),
            OmiSpan::new(1000.0, 2, 8000).ok()
        );
    }
}
