//! Timestamps on the command line: decimal epoch seconds as Omi writes them.
//!
//! `1786961845.727` (three decimals) is taken exactly. Text with fewer decimals
//! (`1786961845`, `1786961845.7`) is exact too. Text with more decimals (`1786961845.72749`) is
//! rounded to the millisecond the way Omi itself rounds: Omi receives timestamps as floats and
//! names objects with Python's `'%.3f' % ts`, so the text is parsed as the nearest `f64` (Rust's
//! parser is correctly rounded, like Python's `float()`) and converted with
//! [`Timestamp::from_f64`], which rounds the float's exact binary value half to even like
//! `'%.3f'`. So `0.0025` becomes `0.003` (the float is slightly above the tie), as in Omi. Copying
//! a timestamp that Python printed (`repr`) therefore selects the object Omi named for it.
//!
//! Only plain decimal text is accepted: ASCII digits with at most one `.` and at least one digit
//! before it. No sign, exponent, `inf`/`nan` or spaces.

use chunk_format::Timestamp;

/// Parses command-line timestamp text (see the module docs). Used as a clap value parser.
pub(crate) fn parse_timestamp(text: &str) -> Result<Timestamp, String> {
    let (int, frac) = text.split_once('.').unwrap_or((text, ""));
    let digits_only = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if int.is_empty() || !digits_only(int) || !digits_only(frac) || text.ends_with('.') {
        return Err(format!(
            "{:?} is not a timestamp: expected decimal epoch seconds like 1786961845.727",
            text.chars().take(40).collect::<String>()
        ));
    }
    let int = int.trim_start_matches('0');
    let int = if int.is_empty() { "0" } else { int };
    if frac.len() <= 3 {
        // Exact: pad to three decimals and use the strict name parser.
        let padded = format!("{int}.{frac:0<3}");
        return padded.parse::<Timestamp>().map_err(|e| e.to_string());
    }
    let seconds: f64 = text
        .parse()
        .map_err(|e| format!("{:?}: {e}", text.chars().take(40).collect::<String>()))?;
    Timestamp::from_f64(seconds).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(text: &str) -> u64 {
        parse_timestamp(text)
            .map(Timestamp::as_millis)
            .unwrap_or(u64::MAX)
    }

    #[test]
    fn three_decimals_are_exact() {
        assert_eq!(ms("1786961845.727"), 1_786_961_845_727);
        assert_eq!(ms("0.000"), 0);
        // Above 2^43 s, where floats cannot tell neighbouring milliseconds apart.
        assert_eq!(ms("9999999999902.923"), 9_999_999_999_902_923);
    }

    #[test]
    fn fewer_decimals_are_padded() {
        assert_eq!(ms("1786961845"), 1_786_961_845_000);
        assert_eq!(ms("1786961845.7"), 1_786_961_845_700);
        assert_eq!(ms("1786961845.72"), 1_786_961_845_720);
        assert_eq!(ms("007.5"), 7_500);
    }

    #[test]
    fn more_decimals_round_like_python_percent_3f() {
        // '%.3f' % 1786961845.7274999 == '1786961845.727'; '%.3f' % 1786961845.7275001 == '.728'.
        assert_eq!(ms("1786961845.7274999"), 1_786_961_845_727);
        assert_eq!(ms("1786961845.7275001"), 1_786_961_845_728);
        // The float nearest 0.0025 is above the tie: Python prints 0.003.
        assert_eq!(ms("0.0025"), 3);
        // The float nearest 1000.0625 is exactly the tie: half to even gives .062.
        assert_eq!(ms("1000.0625"), 1_000_062);
        assert_eq!(ms("1786961845.727000000001"), 1_786_961_845_727);
    }

    #[test]
    fn rejects_everything_else() {
        for bad in [
            "",
            ".",
            "1.",
            ".5",
            "-1.000",
            "+1.000",
            "1e9",
            "inf",
            "nan",
            " 1.000",
            "1.000 ",
            "1,000",
            "1.2.3",
            "0x10",
            "99999999999999.000",
        ] {
            assert!(parse_timestamp(bad).is_err(), "{bad:?} accepted");
        }
    }

    proptest::proptest! {
        #[test]
        fn prop_any_text_parses_or_fails_without_panicking(text in "\\PC{0,40}") {
            let _ = parse_timestamp(&text);
        }

        #[test]
        fn prop_three_decimal_text_round_trips(ms in 0u64..10_000_000_000_000) {
            let ts = Timestamp::from_millis(ms).expect("in range");
            proptest::prop_assert_eq!(parse_timestamp(&ts.to_string()), Ok(ts));
        }
    }
}
