//! Every sample rate, end to end through the binary: the rate comes from the data (pack
//! headers), never from a constant. `ingest` → `export` is byte-exact with the right WAV
//! header at 8, 16, 22.05, 44.1 and 48 kHz; `compact` and `rm --timestamps` keep a 48 kHz
//! conversation's audio and rate; a conversation that mixes rates is refused, naming both.

mod common;

use chunk_format::wav::parse_wav_pcm16;
use common::*;

const RATES: [u32; 5] = [8_000, 16_000, 22_050, 44_100, 48_000];

/// Ingests `seconds` of the test signal at `rate` into conversation `conv` at `start`.
fn ingest_at(sandbox: &Sandbox, conv: &str, rate: u32, seconds: usize, start: &str) -> Vec<u8> {
    let pcm = signal(rate as usize * seconds);
    let wav = sandbox.path(&format!("{conv}-{rate}.wav"));
    write_wav(&wav, &pcm, rate, 1);
    sandbox.ok(&[
        "ingest",
        "--uid",
        "u1",
        "--conversation",
        conv,
        "--start",
        start,
        "--batch-secs",
        "30",
        wav.to_str().expect("utf-8"),
    ]);
    pcm
}

/// Exports `[from, to)` of `conv` as WAV to stdout; returns (rate, pcm).
fn export_wav(sandbox: &Sandbox, conv: &str, from: &str, to: &str) -> (u32, Vec<u8>) {
    let out = sandbox.export(conv, &["--from", from, "--to", to, "-o", "-"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let wav = parse_wav_pcm16(&out.stdout).expect("a WAV file");
    let data = &out.stdout[wav.data_offset..wav.data_offset + wav.data_len];
    (wav.sample_rate, data.to_vec())
}

#[test]
fn ingest_then_export_is_byte_exact_at_every_rate() {
    for rate in RATES {
        let sandbox = Sandbox::new();
        let pcm = ingest_at(&sandbox, "r", rate, 12, "1000");
        let (header_rate, exported) = export_wav(&sandbox, "r", "1000", "1012");
        assert_eq!(header_rate, rate, "WAV header at {rate} Hz");
        assert_eq!(exported.len(), pcm.len(), "length at {rate} Hz");
        assert!(exported == pcm, "PCM differs at {rate} Hz");
    }
}

#[test]
fn compact_and_rm_keep_a_48k_conversation_at_48k() {
    let sandbox = Sandbox::new();
    // Two minutes in 30 s packs: compaction merges them into one.
    let pcm = ingest_at(&sandbox, "hi", 48_000, 120, "1000");
    let done = sandbox.json(&["compact", "--uid", "u1", "--conversation", "hi"]);
    assert_eq!(done["applied"], true, "{done}");
    let listing = sandbox.json(&["ls", "--uid", "u1", "--conversation", "hi"]);
    assert_eq!(
        listing["chunks"].as_array().map(Vec::len),
        Some(1),
        "{listing}"
    );
    let (rate, exported) = export_wav(&sandbox, "hi", "1000", "1120");
    assert_eq!(rate, 48_000);
    assert!(exported == pcm, "compaction changed the 48 kHz audio");
    // Deleting the chunk at 1010 s rewrites the pack at 48 kHz (it used to fail with a bogus
    // overlap error): everything else is unchanged and that 5 s chunk is gone.
    sandbox.ok(&[
        "rm",
        "--uid",
        "u1",
        "--conversation",
        "hi",
        "--timestamps",
        "1010.000",
    ]);
    let out = sandbox.export(
        "hi",
        &[
            "--from",
            "1000",
            "--to",
            "1120",
            "--no-fill-gaps",
            "--format",
            "pcm",
            "-o",
            "-",
        ],
    );
    assert!(out.status.success());
    let chunk = 48_000 * 5 * 2;
    let mut expected = pcm[..2 * chunk].to_vec();
    expected.extend_from_slice(&pcm[3 * chunk..]);
    assert!(
        out.stdout == expected,
        "rm at 48 kHz removed the wrong audio"
    );
}

#[test]
fn a_conversation_mixing_rates_is_refused_naming_both_objects() {
    let sandbox = Sandbox::new();
    ingest_at(&sandbox, "mix", 48_000, 10, "1000");
    ingest_at(&sandbox, "mix", 16_000, 10, "1020");
    let out = sandbox.export("mix", &["--from", "1000", "--to", "1030", "-o", "-"]);
    let line = failure(out, "48000 Hz");
    assert!(line.contains("16000 Hz"), "{line}");
    assert!(line.matches(".pack").count() >= 2, "{line}");
    // Compaction refuses too, and deletes nothing.
    let before = sandbox.json(&["ls", "--uid", "u1", "--conversation", "mix"]);
    let out = sandbox.run(&["compact", "--uid", "u1", "--conversation", "mix"]);
    failure(out, "Hz");
    let after = sandbox.json(&["ls", "--uid", "u1", "--conversation", "mix"]);
    assert_eq!(before, after);
}
