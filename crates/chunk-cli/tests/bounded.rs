//! `export` never succeeds with a partial or unbounded result: a request whose output would
//! span more than `--max-span` is refused before any byte, a WAV that cannot hold the result
//! is refused up front, and an object that cannot be opened fails the export with its name
//! unless `--skip-bad` turns it into a reported skip.

mod common;

use common::*;

/// Ingests 10 s of the test signal at `start` (packs, or Omi with `extra`).
fn ingest(sandbox: &Sandbox, start: &str, extra: &[&str], secret: Option<&str>) {
    let wav = sandbox.path(&format!("at-{start}.wav"));
    write_wav(&wav, &signal(16_000 * 10), 16_000, 1);
    let wav = wav.display().to_string();
    let args = [
        &[
            "ingest",
            "--uid",
            "u1",
            "--conversation",
            "c",
            "--start",
            start,
        ][..],
        extra,
        &[wav.as_str()],
    ]
    .concat();
    match secret {
        Some(secret) => sandbox.ok_with_secret(secret, &args),
        None => sandbox.ok(&args),
    };
}

#[test]
fn a_span_beyond_the_limit_is_refused_before_any_byte() {
    let sandbox = Sandbox::new();
    ingest(&sandbox, T0, &[], None);
    // Omi-style timestamps from the epoch to T0: 57 years of leading silence.
    let out = sandbox.export(
        "c",
        &[
            "--timestamps",
            &format!("0.000,{T0}"),
            "--format",
            "pcm",
            "-o",
            "-",
        ],
    );
    assert!(out.stdout.is_empty(), "{} bytes written", out.stdout.len());
    failure(out, "more than the limit");
    // The same request within a raised limit is not refused for its span.
    let out = sandbox.export(
        "c",
        &[
            "--from",
            T0,
            "--to",
            "1786961855.727",
            "--max-span",
            "20",
            "--format",
            "pcm",
            "-o",
            "-",
        ],
    );
    assert!(out.status.success());
    assert_eq!(out.stdout.len(), 16_000 * 10 * 2);
    // And a 10 s export with a limit of 5 s is refused.
    let out = sandbox.export(
        "c",
        &[
            "--from",
            T0,
            "--to",
            "1786961855.727",
            "--max-span",
            "5",
            "-o",
            "-",
        ],
    );
    failure(out, "more than the limit");
}

#[test]
fn a_wav_that_cannot_hold_the_result_is_refused_up_front() {
    let sandbox = Sandbox::new();
    ingest(&sandbox, "1000", &[], None);
    // 40 h later: filled with silence, 40 h at 16 kHz is 4.6 GB of PCM.
    ingest(&sandbox, "145000", &[], None);
    let target = sandbox.path("big.wav");
    let out = sandbox.export(
        "c",
        &[
            "--from",
            "1000",
            "--to",
            "145010",
            "--max-span",
            "200000",
            "-o",
            target.to_str().expect("utf-8"),
        ],
    );
    failure(out, "more than a WAV file can");
    assert!(!target.exists(), "nothing is written");
    let leftovers: Vec<_> = std::fs::read_dir(sandbox.path(""))
        .expect("dir")
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .contains("chunkvault-export")
        })
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

#[test]
fn an_object_that_cannot_be_opened_fails_the_export_unless_skip_bad() {
    let sandbox = Sandbox::new();
    // Two minutes: plain Omi batches first, then sealed ones.
    ingest(&sandbox, "1000", OMI, None);
    ingest(
        &sandbox,
        "1010",
        &["--layout", "omi", "--level", "enhanced"],
        Some(SECRET),
    );
    let target = sandbox.path("out.pcm");
    let target = target.to_str().expect("utf-8");
    let export = |secret: &str, extra: &[&str]| {
        let args = [
            &[
                "--json",
                "export",
                "--uid",
                "u1",
                "--conversation",
                "c",
                "--from",
                "1000",
                "--to",
                "1020",
                "--format",
                "pcm",
                "-o",
            ][..],
            &[target],
            extra,
        ]
        .concat();
        sandbox.run_with_secret(secret, &args)
    };
    // The right secret: all 20 s.
    let out = export(SECRET, &[]);
    assert!(out.status.success(), "{out:?}");
    // A wrong secret: it used to give the plain 10 s with exit 0; now the sealed object is
    // named in the error.
    let wrong = "wrong-secret-wrong-secret-wrong-secret-00";
    let line = failure(export(wrong, &[]), ".enc");
    assert!(line.contains("chunks/u1/c/"), "{line}");
    // --skip-bad: the plain half, and the sealed objects reported as skipped.
    let out = export(wrong, &["--skip-bad"]);
    assert!(out.status.success(), "{out:?}");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(json["pcm_bytes"], 16_000 * 10 * 2);
    let skipped = json["skipped"].as_array().expect("skipped");
    assert!(!skipped.is_empty(), "{json}");
    assert!(
        skipped
            .iter()
            .all(|s| s["path"].as_str().is_some_and(|p| p.ends_with(".enc")))
    );
}

/// A 500-byte garbage `.pack` used to make `stats` fail for the whole store: it is now
/// reported as bad, and everything else is counted.
#[test]
fn one_garbage_pack_does_not_block_stats() {
    let sandbox = Sandbox::new();
    ingest(&sandbox, "1000", &[], None);
    let before = sandbox.json(&["stats"]);
    let bad = sandbox
        .store_root()
        .join("chunks/u1/c/2000.000-2010.000.pack");
    std::fs::write(&bad, [0x5au8; 500]).expect("write");
    let stats = sandbox.json(&["stats"]);
    assert_eq!(stats["audio_seconds"], before["audio_seconds"]);
    assert_eq!(stats["chunks"], before["chunks"]);
    let bad_objects = stats["bad_objects"].as_array().expect("bad_objects");
    assert_eq!(bad_objects.len(), 1, "{stats}");
    assert_eq!(bad_objects[0]["path"], "chunks/u1/c/2000.000-2010.000.pack");
    let text = sandbox.ok(&["stats"]);
    assert!(
        text.contains("BAD  chunks/u1/c/2000.000-2010.000.pack"),
        "{text}"
    );
}
