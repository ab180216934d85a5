//! Human and machine output: sizes, durations, tables, JSON on stdout.

use std::io::Write;
use std::time::Duration;

use anyhow::{Context as _, Result};

/// Prints a line on stdout, returning an error (instead of panicking like `println!`) when
/// stdout is closed or full.
macro_rules! outln {
    () => {
        $crate::output::write_text("\n")
    };
    ($($arg:tt)*) => {
        $crate::output::write_text(&format!("{}\n", format_args!($($arg)*)))
    };
}

/// Writes text on stdout; see [`outln!`].
pub(crate) fn write_text(text: &str) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .context("writing to stdout")
}

/// Writes a line on stderr, ignoring errors (stderr is where errors would go).
pub(crate) fn note(text: &str) {
    let mut stderr = std::io::stderr().lock();
    let _ = writeln!(stderr, "{text}");
}

/// Prints one JSON value on stdout (pretty, one document).
pub(crate) fn print_json(value: &serde_json::Value) -> Result<()> {
    let text = serde_json::to_string_pretty(value).context("formatting JSON")?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{text}").context("writing to stdout")?;
    Ok(())
}

/// A name or path as it may be printed on a terminal: characters that could forge lines or
/// change how the terminal shows what follows (controls such as newline and ESC, bidi
/// controls, zero-width and other format characters) become `\u{…}` escapes, and a backslash
/// becomes `\\`, so the escaping cannot be forged either. Everything else is printed as is.
/// JSON output carries names raw inside JSON strings instead.
pub(crate) fn escaped(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c == '\\' {
            out.push_str("\\\\");
        } else if needs_escape(c) {
            out.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out
}

/// The library's reason an object is bad, without the leading `path: ` that its errors
/// start with (the report prints the path already).
pub(crate) fn reason_for<'a>(path: &str, reason: &'a str) -> &'a str {
    reason
        .strip_prefix(path)
        .and_then(|rest| rest.strip_prefix(": "))
        .unwrap_or(reason)
}

/// [`escaped`] of a local path (not valid UTF-8 parts shown as U+FFFD).
pub(crate) fn escaped_path(path: &std::path::Path) -> String {
    escaped(&path.to_string_lossy())
}

/// Control characters, and the invisible format characters that reorder or hide text.
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{00ad}' | '\u{061c}' | '\u{180e}' | '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}'
            | '\u{2060}'..='\u{206f}' | '\u{feff}' | '\u{fff9}'..='\u{fffb}')
}

/// A byte count for people: `512 B`, `1.5 KiB`, `18.3 MiB`, `2.10 GiB`.
pub(crate) fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    match unit {
        0 => format!("{n} B"),
        _ if value >= 100.0 => format!("{value:.0} {}", UNITS[unit]),
        _ if value >= 10.0 => format!("{value:.1} {}", UNITS[unit]),
        _ => format!("{value:.2} {}", UNITS[unit]),
    }
}

/// An audio or wall-clock duration for people: `850 ms`, `12.4 s`, `10 min 05 s`, `3 h 02 min`.
pub(crate) fn duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1_000 {
        format!("{ms} ms")
    } else if ms < 60_000 {
        format!("{:.1} s", d.as_secs_f64())
    } else if ms < 3_600_000 {
        format!("{} min {:02} s", ms / 60_000, (ms / 1_000) % 60)
    } else {
        format!("{} h {:02} min", ms / 3_600_000, (ms / 60_000) % 60)
    }
}

/// A ratio `a / b` for people (`12.0×`), or `-` when `b` is zero.
pub(crate) fn ratio(a: f64, b: f64) -> String {
    if b <= 0.0 {
        "-".to_owned()
    } else {
        format!("{:.1}×", a / b)
    }
}

/// Renders rows as left-aligned columns separated by two spaces (the last column unpadded).
pub(crate) fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let columns = header.len();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header_row: Vec<String> = header.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&header_row).chain(rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate().take(columns) {
            if i + 1 == columns {
                line.push_str(cell);
            } else {
                let pad = widths[i].saturating_sub(cell.chars().count());
                line.push_str(cell);
                line.push_str(&" ".repeat(pad + 2));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaped_names_cannot_forge_lines_or_escapes() {
        assert_eq!(escaped("1786961845.727.bin"), "1786961845.727.bin");
        assert_eq!(escaped("a\nsummary: ok"), "a\\u{a}summary: ok");
        assert_eq!(escaped("\u{1b}[31mred"), "\\u{1b}[31mred");
        assert_eq!(escaped("evil\u{202e}nib.wav"), "evil\\u{202e}nib.wav");
        assert_eq!(escaped("alice\u{200b}"), "alice\\u{200b}");
        // A backslash in a name is doubled, so "\\u{a}" in a name is not a newline escape.
        assert_eq!(escaped("x\\u{a}"), "x\\\\u{a}");
        assert_eq!(escaped("Grüße/日本"), "Grüße/日本");
    }

    #[test]
    fn sizes_and_durations() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1536), "1.50 KiB");
        assert_eq!(bytes(19_200_000), "18.3 MiB");
        assert_eq!(bytes(3 * 1024 * 1024 * 1024), "3.00 GiB");
        assert_eq!(duration(Duration::from_millis(850)), "850 ms");
        assert_eq!(duration(Duration::from_millis(12_400)), "12.4 s");
        assert_eq!(duration(Duration::from_secs(605)), "10 min 05 s");
        assert_eq!(duration(Duration::from_secs(3 * 3600 + 125)), "3 h 02 min");
        assert_eq!(ratio(120.0, 10.0), "12.0×");
        assert_eq!(ratio(1.0, 0.0), "-");
    }

    #[test]
    fn table_aligns_columns() {
        let text = table(
            &["A", "LONGER"],
            &[vec!["xx".into(), "1".into()], vec!["y".into(), "22".into()]],
        );
        assert_eq!(text, "A   LONGER\nxx  1\ny   22\n");
    }
}
