//! Snapshot of how a table of tricky object names parse: kind and timestamps for audio names,
//! the typed error for foreign ones. Review `snapshots/tricky_names__tricky_names.snap` when it
//! changes: every line is a compatibility decision.

use std::fmt::Write as _;

use chunk_format::ObjectName;

const TRICKY: &[&str] = &[
    // Every kind, as Omi and chunkvault write them.
    "1786961845.727.bin",
    "1786961845.727.enc",
    "1786961845.727.opus",
    "1786961845.727.opus.enc",
    "1786961845.727.batch.bin",
    "1786961845.727.batch.enc",
    "1786961845.727-1786961900.727.batch.bin",
    "1786961845.727-1786961900.727.batch.enc",
    "1786961845.727-1786961905.727.pack",
    // Range forms at the edges.
    "1786961845.727-1786961845.727.batch.bin",
    "0.000.bin",
    "0.000-0.001.pack",
    "9999999999999.999.opus",
    "0.000-9999999999999.999.batch.enc",
    // Stray objects seen in Omi buckets (vector E) and other foreign names.
    "1000.000.meta.json",
    "notes.txt",
    "abc.bin",
    "a-b.bin",
    "1.5.bin",
    "",
    ".bin",
    "bin",
    "1.000",
    "1.000.",
    "1.000.BIN",
    "1.000.bin.bak",
    "1.000.bin ",
    " 1.000.bin",
    "1.000..bin",
    "1.000.batch",
    "1.000.opus.bin",
    "1.000.enc.opus",
    // Range misuse.
    "2.000-1.000.batch.bin",
    "1.000-2.000.bin",
    "1.000-2.000.opus.enc",
    "1.000.pack",
    "1.000-1.000.pack",
    "2.000-1.000.pack",
    "1.000-.batch.bin",
    "-1.000.batch.bin",
    "1.000-2.000-3.000.batch.bin",
    // Timestamp strictness.
    "01.000.bin",
    "00.000.bin",
    "1.0000.bin",
    "1.00.bin",
    "+1.000.bin",
    "-1.000.bin",
    "1e3.000.bin",
    "１.000.bin",
    "١٢٣.٤٥٦.bin",
    "12345678901234.000.bin",
    "99999999999999999999999999999999999999999999999999999999999.000.bin",
];

#[test]
fn tricky_names() {
    let mut table = String::new();
    for &text in TRICKY {
        let outcome = match text.parse::<ObjectName>() {
            Ok(name) => format!(
                "ok kind={} start={} end={} range_end={:?} batch={} encrypted={}",
                name.kind(),
                name.start(),
                name.end(),
                name.range_end().map(|ts| ts.to_string()),
                name.is_batch(),
                name.is_encrypted(),
            ),
            Err(error) => format!("err {error:?}"),
        };
        writeln!(table, "{text:?}\n    {outcome}").unwrap();
    }
    insta::assert_snapshot!(table);
}
