//! Runs the real `chunkvault` binary on temporary fs stores: every subcommand, global option
//! placement, the `ls --json` snapshot, and the Omi compatibility vectors (scenarios B, C, D).

mod common;

use std::process::Command;

use chunk_format::wav::{parse_wav_pcm16, wav_header};
use common::*;
use serde_json::Value;

#[test]
fn ingest_then_ls_table_and_json_snapshot() {
    let sandbox = Sandbox::new();
    ingested(&sandbox, "conv-1", OMI, None);
    // A stray object under the conversation is listed apart, never as audio.
    let stray = sandbox.store_root().join("chunks/u1/conv-1/meta.json");
    std::fs::write(stray, b"{}").expect("write");
    let listing = sandbox.json(&["ls", "--uid", "u1", "--conversation", "conv-1"]);
    insta::assert_json_snapshot!("ls_json_after_ingest", listing);

    let table = sandbox.ok(&["ls", "--uid", "u1", "--conversation", "conv-1"]);
    assert!(table.starts_with("START"), "{table}");
    assert!(table.contains("chunks/u1/conv-1/1786961855.727-1786961860.727.batch.bin"));
    assert!(table.contains("3 audio object(s)"), "{table}");
    assert!(
        table.contains("1 foreign object(s), not audio:\n  chunks/u1/conv-1/meta.json (2 B)"),
        "{table}"
    );
}

#[test]
fn help_names_every_cloud_backend_and_its_credential_variables() {
    let sandbox = Sandbox::new();
    let help = success(sandbox.run(&["--help"]), &["--help"]);
    for named in [
        "s3://",
        "gcs://",
        "azblob://",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "GOOGLE_APPLICATION_CREDENTIALS",
        "AZURE_STORAGE_ACCOUNT_NAME",
        "AZURE_STORAGE_ACCOUNT_KEY",
    ] {
        assert!(
            help.contains(named),
            "--help does not name {named}:\n{help}"
        );
    }
}

#[test]
fn global_options_work_before_and_after_the_subcommand() {
    let sandbox = Sandbox::new();
    ingested(&sandbox, "conv-g", &[], None);
    let store = sandbox.store_uri();
    // The store comes from --store here (the environment points elsewhere).
    let before = sandbox
        .cmd()
        .env("CHUNKVAULT_STORE", "fs://./elsewhere")
        .args([
            "--json",
            "--store",
            &store,
            "ls",
            "--uid",
            "u1",
            "--conversation",
            "conv-g",
        ])
        .output()
        .expect("run");
    let after = sandbox
        .cmd()
        .env("CHUNKVAULT_STORE", "fs://./elsewhere")
        .args([
            "ls",
            "--uid",
            "u1",
            "--conversation",
            "conv-g",
            "--json",
            "--store",
            &store,
        ])
        .output()
        .expect("run");
    let before = success(before, &["--json ls"]);
    let after = success(after, &["ls --json"]);
    assert_eq!(before, after);
    let parsed: Value = serde_json::from_str(&before).expect("json");
    assert_eq!(parsed["chunks"].as_array().map(Vec::len), Some(3));
}

#[test]
fn export_pcm_and_wav_reproduce_the_input() {
    let sandbox = Sandbox::new();
    let pcm = ingested(&sandbox, "conv-x", OMI, None);
    let base = ["export", "--uid", "u1", "--conversation", "conv-x"];

    // The whole range, raw PCM to a file and to stdout.
    let range = ["--from", T0, "--to", "1786961868.727"];
    sandbox.ok(&[&base[..], &range, &["--format", "pcm", "-o", "all.pcm"]].concat());
    assert_eq!(std::fs::read(sandbox.path("all.pcm")).expect("read"), pcm);
    let out = sandbox.run(&[&base[..], &range, &["--format", "pcm", "-o", "-"]].concat());
    assert!(out.status.success());
    assert_eq!(out.stdout, pcm);

    // WAV to a file: the header says the real length, sox accepts it.
    sandbox.ok(&[&base[..], &range, &["-o", "all.wav"]].concat());
    let wav = std::fs::read(sandbox.path("all.wav")).expect("read");
    let info = parse_wav_pcm16(&wav).expect("valid wav");
    assert_eq!(
        (info.sample_rate, info.channels, info.data_len),
        (16_000, 1, pcm.len())
    );
    assert_eq!(&wav[info.data_range()], &pcm[..]);
    assert_eq!(wav.len(), 44 + pcm.len());
    if let Ok(sox) = Command::new("sox")
        .arg("--i")
        .arg(sandbox.path("all.wav"))
        .output()
    {
        let text = String::from_utf8_lossy(&sox.stdout);
        assert!(
            sox.status.success(),
            "sox --i: {text} {}",
            String::from_utf8_lossy(&sox.stderr)
        );
        assert!(text.contains("16000"), "{text}");
        assert!(text.contains("368000 samples"), "{text}");
    }
    // WAV to stdout: the same bytes (spooled through a temporary file).
    let out = sandbox.run(&[&base[..], &range, &["-o", "-"]].concat());
    assert!(out.status.success());
    assert_eq!(out.stdout, wav);

    // A sub-range is clipped to the millisecond-exact samples.
    sandbox.ok(&[
        &base[..],
        &[
            "--from",
            "1786961847.727",
            "--to",
            "1786961852.227",
            "--format",
            "pcm",
            "-o",
            "part.pcm",
        ],
    ]
    .concat());
    assert_eq!(
        std::fs::read(sandbox.path("part.pcm")).expect("read"),
        &pcm[2 * 32_000..(6 * 32_000 + 16_000)]
    );

    // Omi style: an interior timestamp of a batch selects the whole batch (chunks 2 and 3);
    // the batch of chunk 4 is requested by a timestamp with more decimals than Omi writes.
    sandbox.ok(&[
        &base[..],
        &[
            "--timestamps",
            "1786961860.727,1786961865.72700001",
            "--format",
            "pcm",
            "-o",
            "ts.pcm",
        ],
    ]
    .concat());
    assert_eq!(
        std::fs::read(sandbox.path("ts.pcm")).expect("read"),
        &pcm[2 * 160_000..]
    );

    // A request that matches nothing fails with one line.
    failure(
        sandbox.run(&[&base[..], &["--timestamps", "1.000", "-o", "none.wav"]].concat()),
        "no audio found",
    );
    assert!(
        !sandbox.path("none.wav").exists(),
        "a failed export leaves no file"
    );
}

#[test]
fn ingest_enhanced_needs_the_secret_and_round_trips_with_it() {
    let sandbox = Sandbox::new();
    let wav = sandbox.path("in.wav");
    let pcm = signal(16_000 * 7);
    write_wav(&wav, &pcm, 16_000, 1);
    let wav = wav.display().to_string();
    let args = [
        "ingest",
        "--uid",
        "u2",
        "--conversation",
        "c",
        "--start",
        T0,
        "--level",
        "enhanced",
        "--layout",
        "omi",
        &wav,
    ];
    failure(sandbox.run(&args), "no key material");
    sandbox.ok_with_secret(SECRET, &args);
    let listing = sandbox.json(&["ls", "--uid", "u2", "--conversation", "c"]);
    assert_eq!(listing["chunks"][0]["kind"], "batch.enc");
    assert_eq!(
        listing["chunks"][0]["path"],
        "chunks/u2/c/1786961845.727-1786961850.727.batch.enc"
    );
    let export = [
        "export",
        "--uid",
        "u2",
        "--conversation",
        "c",
        "--timestamps",
        T0,
        "--format",
        "pcm",
        "-o",
        "-",
    ];
    let out = sandbox.run_with_secret(SECRET, &export);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, pcm);
    // The secret can come from a file too (one trailing newline is ignored).
    std::fs::write(sandbox.path("secret"), format!("{SECRET}\n")).expect("write");
    let secret_file = sandbox.path("secret").display().to_string();
    let out = sandbox.run(&[&export[..], &["--secret-file", &secret_file]].concat());
    assert_eq!(out.stdout, pcm);
    // Without the secret the object cannot be decoded: the export fails naming it (it never
    // succeeds with what it could open).
    let line = failure(sandbox.run(&export), "no key material");
    assert!(line.contains(".batch.enc"), "{line}");
}

#[test]
fn ingest_rejects_what_is_not_pcm16_mono() {
    let sandbox = Sandbox::new();
    let base = ["ingest", "--uid", "u", "--conversation", "c"];
    std::fs::write(sandbox.path("song.mp3"), b"ID3\x04\x00 not audio we take").expect("write");
    failure(
        sandbox.run(&[&base[..], &["song.mp3"]].concat()),
        "neither a WAV file",
    );
    std::fs::write(sandbox.path("raw.pcm"), signal(1_000)).expect("write");
    failure(
        sandbox.run(&[&base[..], &["raw.pcm"]].concat()),
        "--sample-rate",
    );
    write_wav(&sandbox.path("stereo.wav"), &signal(2_000), 16_000, 2);
    failure(
        sandbox.run(&[&base[..], &["stereo.wav"]].concat()),
        "2 channels",
    );
    let mut float_wav = wav_header(8, 16_000, 1).expect("header").to_vec();
    float_wav[34] = 32; // 32-bit samples
    float_wav.extend_from_slice(&[0; 8]);
    std::fs::write(sandbox.path("f32.wav"), float_wav).expect("write");
    failure(
        sandbox.run(&[&base[..], &["f32.wav"]].concat()),
        "not a PCM16 WAV",
    );
    // Raw PCM with its rate is taken, 8 kHz here: 1 000 samples are one 125 ms chunk, in
    // Omi's layout and in a pack whose header records 8 kHz (its name ends 125 ms later).
    let raw = ["--sample-rate", "8000", "--start", T0, "raw.pcm"];
    sandbox.ok(&[&base[..], OMI, &raw].concat());
    sandbox.ok(&[&["ingest", "--uid", "u", "--conversation", "c8"][..], &raw].concat());
    let listing = sandbox.json(&["ls", "--uid", "u", "--conversation", "c"]);
    assert_eq!(
        listing["chunks"][0]["path"],
        "chunks/u/c/1786961845.727.batch.bin"
    );
    assert_eq!(listing["chunks"][0]["size"], 2_000);
    let listing = sandbox.json(&["ls", "--uid", "u", "--conversation", "c8"]);
    assert_eq!(
        listing["chunks"][0]["path"],
        "chunks/u/c8/1786961845.727-1786961845.852.pack"
    );
    let export = [
        "export",
        "--uid",
        "u",
        "--conversation",
        "c8",
        "--timestamps",
        T0,
    ];
    let out = sandbox.run(
        &[
            &export[..],
            &["--sample-rate", "8000", "--format", "pcm", "-o", "-"],
        ]
        .concat(),
    );
    assert_eq!(out.stdout, signal(1_000));
}

#[test]
fn rm_by_timestamp_and_all() {
    let sandbox = Sandbox::new();
    ingested(&sandbox, "conv-r", OMI, None);
    let base = ["rm", "--uid", "u1", "--conversation", "conv-r"];
    // An interior timestamp deletes the batch holding it; a timestamp nothing holds is reported.
    let out = sandbox.json(&[&base[..], &["--timestamps", "1786961860.727,1.000"]].concat());
    assert_eq!(
        out["deleted"],
        serde_json::json!(["chunks/u1/conv-r/1786961855.727-1786961860.727.batch.bin"])
    );
    assert_eq!(out["unmatched"], serde_json::json!(["1.000"]));
    let listing = sandbox.json(&["ls", "--uid", "u1", "--conversation", "conv-r"]);
    assert_eq!(listing["chunks"].as_array().map(Vec::len), Some(2));
    let text = sandbox.ok(&[&base[..], &["--all"]].concat());
    assert!(text.contains("2 object(s)"), "{text}");
    let listing = sandbox.json(&["ls", "--uid", "u1", "--conversation", "conv-r"]);
    assert_eq!(listing["chunks"], serde_json::json!([]));
}

#[test]
fn verify_reports_bad_objects_and_fails() {
    let sandbox = Sandbox::new();
    ingested(&sandbox, "plain", OMI, None);
    ingested(
        &sandbox,
        "sealed",
        &["--layout", "omi", "--level", "enhanced"],
        Some(SECRET),
    );
    let good = sandbox.run_with_secret(SECRET, &["verify"]);
    let text = success(good, &["verify"]);
    assert!(text.contains("checked 6 audio object(s): 6 ok"), "{text}");

    // Without the secret the sealed objects cannot be checked: named, with the reason.
    let out = sandbox.run(&["verify", "--uid", "u1"]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    failure(out, "3 of 6 audio object(s) are bad");
    assert!(stdout.contains("BAD  chunks/u1/sealed/1786961845.727-1786961850.727.batch.enc: sealed object but the service has no key material"), "{stdout}");
    assert!(
        stdout.contains("no secret was given (CHUNKVAULT_SECRET or --secret-file)"),
        "{stdout}"
    );

    // One flipped bit in one sealed object: only that object is bad.
    let victim = "chunks/u1/sealed/1786961855.727-1786961860.727.batch.enc";
    let path = sandbox.store_root().join(victim);
    let mut bytes = std::fs::read(&path).expect("read");
    bytes[200_000] ^= 0x01;
    std::fs::write(&path, bytes).expect("write");
    // A stray file is reported as foreign, not bad.
    std::fs::write(
        sandbox.store_root().join("chunks/u1/sealed/notes.txt"),
        b"hi",
    )
    .expect("write");
    let out = sandbox.run_with_secret(
        SECRET,
        &[
            "--json",
            "verify",
            "--uid",
            "u1",
            "--conversation",
            "sealed",
        ],
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("json");
    failure(out, "1 of 3 audio object(s) are bad");
    assert_eq!(report["bad"].as_array().map(Vec::len), Some(1));
    assert_eq!(report["bad"][0]["path"], victim);
    assert!(
        report["bad"][0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("frame 1")),
        "{report}"
    );
    assert_eq!(report["foreign"][0]["path"], "chunks/u1/sealed/notes.txt");
    // A truncated plain object is still PCM; an empty one is bad.
    std::fs::write(
        sandbox
            .store_root()
            .join("chunks/u1/plain/1786961900.000.bin"),
        b"",
    )
    .expect("write");
    let out = sandbox.run(&["verify", "--uid", "u1", "--conversation", "plain"]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    failure(out, "1 of 4");
    assert!(
        stdout.contains("chunks/u1/plain/1786961900.000.bin: empty object"),
        "{stdout}"
    );
}

#[test]
fn stats_counts_objects_chunks_and_writes() {
    let sandbox = Sandbox::new();
    ingested(&sandbox, "a", OMI, None);
    ingested(
        &sandbox,
        "b",
        &["--layout", "omi", "--level", "enhanced"],
        Some(SECRET),
    );
    let text = sandbox.ok_with_secret(SECRET, &["--json", "stats"]);
    let stats: Value = serde_json::from_str(&text).expect("stats --json");
    assert_eq!(stats["users"], 1);
    assert_eq!(stats["conversations"], 2);
    assert_eq!(stats["objects"], 6);
    assert_eq!(stats["write_operations"], 6);
    // Chunks: each conversation's 23 s of covered time in 5 s chunks.
    assert_eq!(stats["chunks"], 10);
    assert_eq!(stats["bad_objects"].as_array().map(Vec::len), Some(0));
    assert_eq!(stats["write_operations_one_per_chunk"], 10);
    let raw = 16_000 * 2 * SECONDS as u64;
    assert_eq!(stats["kinds"]["batch.bin"]["bytes"], raw);
    assert_eq!(stats["kinds"]["batch.enc"]["bytes"], raw + 5 * 32);
    let seconds = stats["audio_seconds"].as_f64().expect("number");
    assert!((seconds - 46.0).abs() < 0.01, "{seconds}");
    let storage = stats["cost_usd"]["storage_per_month"]
        .as_f64()
        .expect("number");
    let expected = (2 * raw + 160) as f64 / (1u64 << 30) as f64 * 0.023;
    assert!(
        (storage - expected).abs() < 1e-12,
        "{storage} vs {expected}"
    );
    let text = sandbox.ok_with_secret(SECRET, &["stats", "--uid", "u1"]);
    assert!(
        text.contains("write operations: 6 (one per object) vs 10"),
        "{text}"
    );
    // Without the secret the sealed conversation cannot be decoded: it adds no audio, its
    // objects are named, and the text says why.
    let locked = sandbox.json(&["stats"]);
    assert_eq!(locked["objects"], 6);
    assert_eq!(locked["audio_seconds"].as_f64(), Some(SECONDS as f64));
    assert_eq!(locked["bad_objects"].as_array().map(Vec::len), Some(3));
    assert!(
        sandbox
            .ok(&["stats"])
            .contains("sealed objects add no audio")
    );
    assert!(text.contains("$0.023 per GB-month"), "{text}");
    let other = sandbox.json(&["stats", "--uid", "nobody"]);
    assert_eq!(other["objects"], 0);
}

#[test]
fn purge_asks_for_yes_then_deletes_everything_of_the_user() {
    let sandbox = Sandbox::new();
    ingested(&sandbox, "p1", OMI, None);
    ingested(&sandbox, "p2", &[], None);
    let line = failure(sandbox.run(&["purge", "--uid", "u1"]), "--yes");
    assert!(line.contains("6 object(s)"), "{line}");
    assert_eq!(
        sandbox.json(&["stats"])["objects"],
        6,
        "nothing deleted without --yes"
    );
    let text = sandbox.ok(&["purge", "--uid", "u1", "--yes"]);
    assert!(text.contains("6 object(s) deleted"), "{text}");
    assert_eq!(sandbox.json(&["stats"])["objects"], 0);
}

#[test]
fn compact_plans_then_merges_omi_batches_into_a_pack() {
    let sandbox = Sandbox::new();
    let pcm = ingested(&sandbox, "k", OMI, None);
    let base = ["compact", "--uid", "u1", "--conversation", "k"];
    let plan = sandbox.ok(&[&base[..], &["--dry-run"]].concat());
    assert!(plan.contains("3 object(s) -> 1 (1 new pack(s))"), "{plan}");
    assert!(plan.contains("dry run: nothing changed"), "{plan}");
    assert_eq!(
        sandbox.json(&["stats"])["objects"],
        3,
        "a dry run changes nothing"
    );
    let done = sandbox.json(&base);
    assert_eq!(done["applied"], true);
    assert_eq!(done["report"]["deleted"].as_array().map(Vec::len), Some(3));
    let listing = sandbox.json(&["ls", "--uid", "u1", "--conversation", "k"]);
    assert_eq!(listing["chunks"].as_array().map(Vec::len), Some(1));
    assert_eq!(listing["chunks"][0]["kind"], "pack");
    // The audio is unchanged.
    let out = sandbox.export(
        "k",
        &[
            "--from",
            T0,
            "--to",
            "1786961868.727",
            "--format",
            "pcm",
            "-o",
            "-",
        ],
    );
    assert!(out.status.success());
    assert_eq!(out.stdout, pcm);
    // Nothing left to do.
    let again = sandbox.ok(&base);
    assert!(again.contains("nothing to compact"), "{again}");
}

/// Issue 12's reproduction: a recording of 6 min 51.2765 s (ending half a millisecond off a
/// whole one) at 1000 s, a second recording at 1030 s over it; `compact` keeps the export of
/// [1000, 1500) byte-identical (it used to zero the 8 samples at 411.2765 s, where the first
/// recording ends and the second resumes).
#[test]
fn compact_keeps_an_overlap_that_ends_off_a_whole_millisecond() {
    let sandbox = Sandbox::new();
    let samples = 6_580_424; // 411.2765 s at 16 kHz
    let first = signal(samples);
    // The second recording differs from the first, so a misplaced sample shows.
    let second: Vec<u8> = first
        .chunks_exact(2)
        .flat_map(|s| {
            i16::from_le_bytes([s[0], s[1]])
                .wrapping_neg()
                .to_le_bytes()
        })
        .collect();
    for (name, pcm, start) in [("one", &first, "1000"), ("two", &second, "1030")] {
        let wav = sandbox.path(&format!("{name}.wav"));
        write_wav(&wav, pcm, 16_000, 1);
        let wav = wav.display().to_string();
        sandbox.ok(&[
            "ingest",
            "--uid",
            "u1",
            "--conversation",
            "ov",
            "--start",
            start,
            &wav,
        ]);
    }
    let export = || {
        let out = sandbox.export(
            "ov",
            &[
                "--from", "1000", "--to", "1500", "--format", "pcm", "-o", "-",
            ],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    };
    // Both recordings cover 1000 s to 1441.2765 s without a hole (where they overlap, the
    // object that starts first wins, pack by pack).
    let before = export();
    assert_eq!(
        before.len(),
        7_060_424 * 2,
        "length of the export before compaction"
    );
    // The first recording's last sample, at 411.2765 s - 1/16000 s, is in the export.
    let last = (samples - 1) * 2;
    assert_eq!(&before[last..last + 2], &first[last..last + 2]);
    let done = sandbox.json(&["compact", "--uid", "u1", "--conversation", "ov"]);
    assert_eq!(done["applied"], true, "{done}");
    let after = export();
    assert_eq!(after.len(), before.len());
    let first_difference = before.iter().zip(&after).position(|(a, b)| a != b);
    assert_eq!(
        first_difference, None,
        "compaction changed the export (first differing byte)"
    );
}

#[test]
fn packs_ingest_list_export_rm_verify_and_stats() {
    let sandbox = Sandbox::new();
    let pcm = ingested(&sandbox, "pk", &[], None);
    let listing = sandbox.json(&["ls", "--uid", "u1", "--conversation", "pk"]);
    insta::assert_json_snapshot!("ls_json_packs", listing);
    let ls = ["ls", "--uid", "u1", "--conversation", "pk"];
    let paths: Vec<String> = listing["chunks"]
        .as_array()
        .expect("chunks")
        .iter()
        .map(|c| c["path"].as_str().expect("path").to_owned())
        .collect();
    assert_eq!(
        paths,
        [
            "chunks/u1/pk/1786961845.727-1786961855.727.pack",
            "chunks/u1/pk/1786961855.727-1786961865.727.pack",
            "chunks/u1/pk/1786961865.727-1786961868.727.pack",
        ]
    );
    // Export: the whole range, and a range inside one chunk.
    let export = [
        "export",
        "--uid",
        "u1",
        "--conversation",
        "pk",
        "--format",
        "pcm",
        "-o",
        "-",
    ];
    let out = sandbox.run(&[&export[..], &["--from", T0, "--to", "1786961868.727"]].concat());
    assert_eq!(out.stdout, pcm);
    let out = sandbox.run(
        &[
            &export[..],
            &["--from", "1786961856.727", "--to", "1786961857.227"],
        ]
        .concat(),
    );
    assert_eq!(out.stdout, &pcm[11 * 32_000..11 * 32_000 + 16_000]);
    // Stats count the chunks from the pack trailers, exactly.
    let stats = sandbox.json(&["stats"]);
    assert_eq!(stats["objects"], 3);
    assert_eq!(stats["chunks"], 5);
    assert_eq!(stats["audio_seconds"].as_f64(), Some(23.0));
    // rm of one chunk rewrites its pack without it; the rest of the audio is untouched.
    let removed = sandbox.json(&[
        "rm",
        "--uid",
        "u1",
        "--conversation",
        "pk",
        "--timestamps",
        "1786961850.727",
    ]);
    assert_eq!(
        removed["deleted"],
        serde_json::json!(["chunks/u1/pk/1786961845.727-1786961855.727.pack"])
    );
    assert_eq!(
        removed["written"],
        serde_json::json!(["chunks/u1/pk/1786961845.727-1786961850.727.pack"])
    );
    let out = sandbox.run(
        &[
            &export[..],
            &["--from", T0, "--to", "1786961868.727", "--no-fill-gaps"],
        ]
        .concat(),
    );
    assert_eq!(out.stdout, [&pcm[..160_000], &pcm[320_000..]].concat());
    assert_eq!(
        sandbox.json(&ls)["chunks"].as_array().map(Vec::len),
        Some(3)
    );
    // verify checks every frame: one flipped byte in a frame makes that pack bad.
    success(sandbox.run(&["verify"]), &["verify"]);
    let victim = "chunks/u1/pk/1786961855.727-1786961865.727.pack";
    let path = sandbox.store_root().join(victim);
    let mut bytes = std::fs::read(&path).expect("read");
    bytes[100] ^= 0x40;
    std::fs::write(&path, bytes).expect("write");
    let out = sandbox.run(&["verify", "--uid", "u1", "--conversation", "pk"]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    failure(out, "1 of 3 audio object(s) are bad");
    assert!(stdout.contains(&format!("BAD  {victim}: ")), "{stdout}");
}

#[test]
fn sealed_packs_need_the_secret() {
    let sandbox = Sandbox::new();
    let pcm = ingested(&sandbox, "sp", &["--level", "enhanced"], Some(SECRET));
    let export = [
        "export",
        "--uid",
        "u1",
        "--conversation",
        "sp",
        "--from",
        T0,
        "--to",
        "1786961868.727",
        "--format",
        "pcm",
        "-o",
        "-",
    ];
    let out = sandbox.run_with_secret(SECRET, &export);
    assert_eq!(out.stdout, pcm);
    success(sandbox.run_with_secret(SECRET, &["verify"]), &["verify"]);
    let out = sandbox.run(&["verify"]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    failure(out, "3 of 3 audio object(s) are bad");
    assert!(
        stdout.contains("sealed object but the service has no key material"),
        "{stdout}"
    );
    // Another secret fails to open them, and says so.
    let out = sandbox.run_with_secret("another-secret-another-secret-another", &["verify"]);
    failure(out, "3 of 3 audio object(s) are bad");
}

#[test]
fn require_sealed_refuses_plaintext_packs() {
    let sandbox = Sandbox::new();
    let pcm = ingested(&sandbox, "pp", &[], None);
    let range = [
        "--from",
        T0,
        "--to",
        "1786961868.727",
        "--format",
        "pcm",
        "-o",
        "-",
    ];
    assert_eq!(sandbox.export("pp", &range).stdout, pcm);
    success(sandbox.run(&["verify"]), &["verify"]);
    // Where every user's audio must be sealed, the same plaintext packs are refused by name.
    let out = sandbox.export("pp", &[&range[..], &["--require-sealed"]].concat());
    failure(out, "plaintext pack where sealing is required");
    let out = sandbox.run(&["--require-sealed", "verify"]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    failure(out, "3 of 3 audio object(s) are bad");
    assert!(
        stdout.contains("BAD  chunks/u1/pp/1786961845.727-1786961855.727.pack: plaintext pack where sealing is required"),
        "{stdout}"
    );
}

#[test]
fn bad_arguments_fail_clearly() {
    let sandbox = Sandbox::new();
    failure(
        sandbox.run(&["ls", "--uid", "a/b", "--conversation", "c"]),
        "--uid \"a/b\"",
    );
    failure(
        sandbox.run(&["--store", "ftp://x", "stats"]),
        "unknown scheme",
    );
    let out = sandbox.run(&[
        "export",
        "--uid",
        "u",
        "--conversation",
        "c",
        "--timestamps",
        "1e9",
        "-o",
        "-",
    ]);
    assert_eq!(out.status.code(), Some(2), "usage errors exit 2");
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a timestamp"));
    failure(
        sandbox.run_with_secret("short", &["stats"]),
        "the master secret",
    );
}

#[test]
fn demo_runs_end_to_end() {
    let sandbox = Sandbox::new();
    let out = sandbox.run(&["demo", "--minutes", "1", "--wav", "demo.wav"]);
    let text = success(out, &["demo"]);
    assert!(text.contains("summary"), "{text}");
    assert!(text.contains("24/24 chunks byte-exact"), "{text}");
    assert!(text.contains("built-in demo secret"), "{text}");
    let wav = std::fs::read(sandbox.path("demo.wav")).expect("demo wav");
    let info = parse_wav_pcm16(&wav).expect("valid wav");
    assert_eq!((info.sample_rate, info.data_len), (16_000, 60 * 32_000));
    // A second run uses a fresh conversation; the JSON summary adds up.
    let summary = sandbox.json(&["demo", "--minutes", "1", "--wav", "demo2.wav"]);
    assert_eq!(summary["chunks"], 24);
    assert_eq!(summary["chunks_verified"], 24);
    assert_eq!(summary["mismatches"], 0);
    assert!(summary["write_operations"].as_u64().expect("n") < 24);
    let stats = sandbox.json(&["stats"]);
    assert_eq!(stats["users"], 2);
    assert_eq!(stats["conversations"], 4);
    // What the demo wrote verifies with the demo secret... and not without it.
    let verify = sandbox.run_with_secret(
        "chunkvault-demo-secret:not-for-real-data:0123456789",
        &["verify"],
    );
    success(verify, &["verify"]);
    failure(sandbox.run(&["verify"]), "are bad");
}

// ---- Omi compatibility vectors -------------------------------------------------------------

/// `ls --json` and `export --format pcm` on Omi's buckets reproduce Omi's listings and the
/// merged audio of every download case where Omi's answer is right (the cases Omi answers
/// with "not found" are its start-only matching bug, corrected on purpose). The replay rules
/// are in `common` (shared with `gcs_takeover.rs`, which replays every case of A–E).
#[test]
fn omi_vectors_ls_and_export_match() {
    let mut compared = 0;
    for scenario in ["B", "C", "D"] {
        let sandbox = Sandbox::new();
        copy_dir(
            &vectors_dir().join(scenario).join("bucket"),
            &sandbox.store_root(),
        );
        let cli = StoreCli::fs(&sandbox);
        assert_listings_match(&cli, "fs", scenario);
        for case in cases(&expected_json(scenario, "downloads.json")) {
            let result = &case["result"];
            if result["ok"] != true || case["involves_opus_decode"] == true {
                continue;
            }
            assert_export(
                &cli,
                &format!("fs {scenario}"),
                case,
                &Expected::recorded(result),
            );
            compared += 1;
        }
    }
    // B and C: 6 ok cases each, D: 6.
    assert_eq!(compared, 18);
}

/// `audit --json` of every vector bucket (Omi's own objects), snapshotted: E's duplicate
/// instants (`.bin`, `.opus`, `.enc` at one timestamp), its gaps, its undecodable and foreign
/// objects appear, and A–D's clean timelines stay clean. The exit status follows the findings:
/// 1 where an object cannot be decoded, and with `--strict` also on a gap, overlap or
/// duplicate.
#[test]
fn audit_json_of_every_vector_bucket() {
    for scenario in ["A", "B", "C", "D", "E"] {
        let sandbox = Sandbox::new();
        copy_dir(
            &vectors_dir().join(scenario).join("bucket"),
            &sandbox.store_root(),
        );
        let cli = StoreCli::fs(&sandbox);
        let out = cli.run(Some(OMI_SECRET), &["--json", "audit", "--uid", OMI_UID]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let audit: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{scenario}: audit --json is not JSON ({e}): {text}"));
        let conversations = audit["conversations"].as_array().expect("conversations");
        let undecodable = conversations
            .iter()
            .any(|c| c["undecodable"].as_array().is_some_and(|u| !u.is_empty()));
        let findings = conversations.iter().any(|c| {
            ["gaps", "overlaps", "duplicates"]
                .iter()
                .any(|k| c[*k].as_array().is_some_and(|v| !v.is_empty()))
        });
        assert_eq!(
            out.status.success(),
            !undecodable,
            "{scenario}: exit status {:?} with undecodable = {undecodable}",
            out.status
        );
        let strict = cli.run(
            Some(OMI_SECRET),
            &["--json", "audit", "--uid", OMI_UID, "--strict"],
        );
        assert_eq!(
            strict.status.success(),
            !undecodable && !findings,
            "{scenario}: --strict"
        );
        insta::assert_json_snapshot!(format!("audit_json_{scenario}"), audit);
        // `stats` counts the same covered time: E's 65 s of conv-e (its Opus objects
        // included, the duplicate instants once) and conv-e2's 5 s; 13 audio objects in
        // 70 s are 668.6 writes per recorded hour against 720.
        if scenario == "E" {
            let stats = cli.json(Some(OMI_SECRET), &["stats", "--uid", OMI_UID]);
            let covered: f64 = conversations
                .iter()
                .map(|c| c["covered_seconds"].as_f64().expect("seconds"))
                .sum();
            assert_eq!(stats["audio_seconds"].as_f64(), Some(covered));
            assert_eq!(covered, 70.0);
            assert_eq!(stats["objects"], 13);
            let per_hour = stats["writes_per_recorded_hour"].as_f64().expect("rate");
            assert!((per_hour - 13.0 * 3600.0 / 70.0).abs() < 1e-9, "{per_hour}");
        }
    }
}
