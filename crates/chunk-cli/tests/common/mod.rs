//! Helpers shared by the `chunkvault` binary's integration tests: a sandbox with an fs store,
//! the test signal, WAV files, assertions on exit status and one-line errors, and the replay
//! rules of Omi's compatibility vectors (used by `cli.rs` on fs and `gcs_takeover.rs`).

#![allow(dead_code)] // each test file uses its own part of the helpers

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use chunk_format::wav::wav_header;
use chunkvault_tests::omi::corrections::{Correction, correction};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Omi's vector secret (`omi_` + 60 × `0`).
pub(crate) const OMI_SECRET: &str =
    "omi_000000000000000000000000000000000000000000000000000000000000";
/// A test secret for enhanced ingests.
pub(crate) const SECRET: &str = "test-secret-test-secret-test-secret-0123";
/// T0 of the tests (and of Omi's vectors).
pub(crate) const T0: &str = "1786961845.727";

/// A temporary working directory with an fs store in it.
pub(crate) struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    pub(crate) fn new() -> Sandbox {
        Sandbox {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub(crate) fn store_root(&self) -> PathBuf {
        self.path("store")
    }

    pub(crate) fn store_uri(&self) -> String {
        format!("fs://{}", self.store_root().display())
    }

    /// The binary with a clean environment, the sandbox as working directory and its store.
    pub(crate) fn cmd(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_chunkvault"));
        cmd.current_dir(self.dir.path())
            .env_remove("CHUNKVAULT_SECRET")
            .env_remove("CHUNKVAULT_KEYRING")
            .env_remove("RUST_LOG")
            .env("CHUNKVAULT_STORE", self.store_uri());
        cmd
    }

    pub(crate) fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().expect("run chunkvault")
    }

    pub(crate) fn run_with_secret(&self, secret: &str, args: &[&str]) -> Output {
        self.cmd()
            .env("CHUNKVAULT_SECRET", secret)
            .args(args)
            .output()
            .expect("run chunkvault")
    }

    /// Runs and asserts success; returns stdout.
    pub(crate) fn ok(&self, args: &[&str]) -> String {
        success(self.run(args), args)
    }

    pub(crate) fn ok_with_secret(&self, secret: &str, args: &[&str]) -> String {
        success(self.run_with_secret(secret, args), args)
    }

    /// Runs `export` of user `u1`'s conversation `conversation` with `args` (what to export,
    /// the format, the output).
    pub(crate) fn export(&self, conversation: &str, args: &[&str]) -> Output {
        let base = ["export", "--uid", "u1", "--conversation", conversation];
        self.run(&[&base[..], args].concat())
    }

    pub(crate) fn json(&self, args: &[&str]) -> Value {
        let text = self.ok(&[&["--json"], args].concat());
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {text}"))
    }
}

pub(crate) fn success(out: Output, args: &[&str]) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{args:?} failed ({:?})\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Asserts a failure with exit status 1 and a one-line `chunkvault: …` error containing
/// `needle`; returns the error line.
pub(crate) fn failure(out: Output, needle: &str) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    let line = stderr
        .lines()
        .rfind(|l| l.starts_with("chunkvault: "))
        .unwrap_or_else(|| panic!("no one-line error in: {stderr}"))
        .to_owned();
    assert!(line.contains(needle), "{line:?} does not say {needle:?}");
    line
}

/// A deterministic PCM16 mono test signal: a sawtooth whose slope changes every second.
pub(crate) fn signal(samples: usize) -> Vec<u8> {
    (0..samples)
        .flat_map(|n| {
            let slope = 37 + (n / 16_000) as i64 * 11;
            let value = ((n as i64 * slope) % 40_000 - 20_000) as i16;
            value.to_le_bytes()
        })
        .collect()
}

pub(crate) fn write_wav(path: &Path, pcm: &[u8], rate: u32, channels: u16) {
    let mut bytes = wav_header(pcm.len() as u32, rate, channels)
        .expect("header")
        .to_vec();
    bytes.extend_from_slice(pcm);
    std::fs::write(path, bytes).expect("write wav");
}

pub(crate) fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// 23 s of audio at T0: with 5 s chunks and 10 s batches, objects of chunks [0,1], [2,3], [4].
pub(crate) const SECONDS: usize = 23;
/// Ingest in Omi's layout (the default is packs).
pub(crate) const OMI: &[&str] = &["--layout", "omi"];

pub(crate) fn ingested(
    sandbox: &Sandbox,
    conversation: &str,
    extra: &[&str],
    secret: Option<&str>,
) -> Vec<u8> {
    let pcm = signal(16_000 * SECONDS);
    let wav = sandbox.path(&format!("{conversation}.wav"));
    write_wav(&wav, &pcm, 16_000, 1);
    let wav = wav.display().to_string();
    let args = [
        &[
            "ingest",
            "--uid",
            "u1",
            "--conversation",
            conversation,
            "--start",
            T0,
            "--batch-secs",
            "10",
        ][..],
        extra,
        &[wav.as_str()],
    ]
    .concat();
    match secret {
        Some(secret) => sandbox.ok_with_secret(secret, &args),
        None => sandbox.ok(&args),
    };
    pcm
}

// ---- Omi compatibility vectors -------------------------------------------------------------
//
// One copy of each replay rule, whatever store the binary is pointed at: where the vectors
// are, how a recorded case becomes a command line, how the output is compared with
// `expected/`, and which recorded results are Omi bugs that chunkvault corrects.

/// The uid of every object in the vectors.
pub(crate) const OMI_UID: &str = "oracle-uid";

/// `tests/fixtures/omi/vectors/scenarios` of this checkout.
pub(crate) fn vectors_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/omi/vectors/scenarios")
}

/// Copies the tree `from` to `to` (without the fs backend's `.chunkvault-tmp`): how a
/// scenario's `bucket/` becomes an fs store.
pub(crate) fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let name = entry.file_name();
        if name == ".chunkvault-tmp" {
            continue;
        }
        let target = to.join(&name);
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copy");
        }
    }
}

pub(crate) fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).expect("read fixture")).expect("fixture json")
}

/// `expected/<file>` of `scenario`, parsed.
pub(crate) fn expected_json(scenario: &str, file: &str) -> Value {
    read_json(&vectors_dir().join(scenario).join("expected").join(file))
}

/// The cases of a JSON array (`downloads.json`, `delete.json`).
pub(crate) fn cases(list: &Value) -> &[Value] {
    list.as_array().expect("a list of cases")
}

/// Runs a future to completion on a runtime of its own (store set-up and inspection).
pub(crate) fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(future)
}

/// The binary pointed at one store (`--store URI`), run from a sandbox.
pub(crate) struct StoreCli<'a> {
    sandbox: &'a Sandbox,
    uri: String,
}

impl<'a> StoreCli<'a> {
    /// On the sandbox's own fs store.
    pub(crate) fn fs(sandbox: &'a Sandbox) -> StoreCli<'a> {
        StoreCli {
            sandbox,
            uri: sandbox.store_uri(),
        }
    }

    /// On the store at `uri`.
    pub(crate) fn on(sandbox: &'a Sandbox, uri: String) -> StoreCli<'a> {
        StoreCli { sandbox, uri }
    }

    /// The store's URI.
    pub(crate) fn uri(&self) -> &str {
        &self.uri
    }

    /// Runs `args` on the store, with the master secret `secret` when one is given.
    pub(crate) fn run(&self, secret: Option<&str>, args: &[&str]) -> Output {
        let mut cmd = self.sandbox.cmd();
        if let Some(secret) = secret {
            cmd.env("CHUNKVAULT_SECRET", secret);
        }
        cmd.arg("--store")
            .arg(&self.uri)
            .args(args)
            .output()
            .expect("run chunkvault")
    }

    /// Runs `args` with `--json`, asserts success and parses stdout.
    pub(crate) fn json(&self, secret: Option<&str>, args: &[&str]) -> Value {
        let args = [&["--json"], args].concat();
        let text = success(self.run(secret, &args), &args);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {text}"))
    }
}

/// `ls --json` of Omi's user's conversation `conversation`.
pub(crate) fn ls_json(cli: &StoreCli<'_>, conversation: &str) -> Value {
    cli.json(
        None,
        &["ls", "--uid", OMI_UID, "--conversation", conversation],
    )
}

/// The `chunks` of an `ls --json` output, each cut down to the fields of Omi's
/// `list_audio_chunks` entries (`timestamp`, `path`, `size`, `is_batch`), in output order.
pub(crate) fn ls_as_omi(listing: &Value) -> Value {
    listing["chunks"]
        .as_array()
        .expect("chunks")
        .iter()
        .map(|c| {
            serde_json::json!({
                "timestamp": c["timestamp"], "path": c["path"],
                "size": c["size"], "is_batch": c["is_batch"],
            })
        })
        .collect()
}

/// Asserts that `ls --json` of every conversation of `scenario`'s `expected/list.json` is
/// Omi's listing: the same entries in the same order, timestamps equal as f64. Returns how
/// many conversations were compared.
pub(crate) fn assert_listings_match(cli: &StoreCli<'_>, label: &str, scenario: &str) -> usize {
    let lists = expected_json(scenario, "list.json");
    let lists = lists.as_object().expect("object");
    for (conversation, expected) in lists {
        let got = ls_as_omi(&ls_json(cli, conversation));
        assert_eq!(&got, expected, "{label} {scenario} ls {conversation}");
    }
    lists.len()
}

/// What an export must give.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Expected {
    /// Raw PCM of this length and sha256.
    Audio {
        /// Bytes.
        len: u64,
        /// Lowercase hex.
        sha256: String,
    },
    /// No audio (Omi's `FileNotFoundError`): the export fails saying so and writes nothing.
    NoAudio,
}

impl Expected {
    /// A download case's `result` as Omi's code recorded it.
    pub(crate) fn recorded(result: &Value) -> Expected {
        match result["ok"].as_bool() {
            Some(true) => Expected::Audio {
                len: result["len"].as_u64().expect("len"),
                sha256: result["sha256"].as_str().expect("sha256").to_owned(),
            },
            Some(false) => {
                assert_eq!(result["error_type"], "FileNotFoundError", "{result}");
                Expected::NoAudio
            }
            None => panic!("a result without `ok`: {result}"),
        }
    }

    fn of_pcm(pcm: &[u8]) -> Expected {
        Expected::Audio {
            len: pcm.len() as u64,
            sha256: sha256_hex(pcm),
        }
    }
}

/// The `%.3f` timestamps of a case, in the case's order (duplicates kept), comma separated.
fn timestamps_arg(case: &Value) -> String {
    let timestamps: Vec<&str> = case["timestamps_ts3"]
        .as_array()
        .expect("ts3")
        .iter()
        .map(|t| t.as_str().expect("ts3 text"))
        .collect();
    timestamps.join(",")
}

/// The `export` command line replaying download case `case`: its timestamps, `--no-fill-gaps`
/// when it does not fill gaps, its sample rate, raw PCM to stdout.
pub(crate) fn export_args(case: &Value) -> Vec<String> {
    let conversation = case["conversation_id"].as_str().expect("conversation");
    let rate = case["sample_rate"]
        .as_u64()
        .expect("sample_rate")
        .to_string();
    let mut args: Vec<String> = [
        "export",
        "--uid",
        OMI_UID,
        "--conversation",
        conversation,
        "--timestamps",
        timestamps_arg(case).as_str(),
        "--sample-rate",
        rate.as_str(),
        "--format",
        "pcm",
        "-o",
        "-",
    ]
    .map(str::to_owned)
    .into();
    if case["fill_gaps"] == false {
        args.push("--no-fill-gaps".to_owned());
    }
    args
}

/// Runs download case `case` as `export` (with Omi's secret) and asserts it gives `expected`.
pub(crate) fn assert_export(cli: &StoreCli<'_>, label: &str, case: &Value, expected: &Expected) {
    let args = export_args(case);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = cli.run(Some(OMI_SECRET), &args);
    let what = format!("{label} export {}", case["case"]);
    match expected {
        Expected::Audio { len, sha256 } => {
            assert!(
                out.status.success(),
                "{what}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert_eq!(out.stdout.len() as u64, *len, "{what}");
            assert_eq!(&sha256_hex(&out.stdout), sha256, "{what}");
        }
        Expected::NoAudio => {
            assert!(
                out.stdout.is_empty(),
                "{what}: wrote {} B",
                out.stdout.len()
            );
            failure(out, "no audio found for conversation");
        }
    }
}

/// What chunkvault's export must give for download case `case` of `scenario`: Omi's recorded
/// result, or the corrected one where that result is an Omi bug.
pub(crate) fn expected_download(scenario: &str, case: &Value) -> Expected {
    let name = case["case"].as_str().expect("case name");
    match correction(scenario, name) {
        None => Expected::recorded(&case["result"]),
        Some(Correction::SameAs(other)) => {
            let downloads = expected_json(scenario, "downloads.json");
            let other = cases(&downloads)
                .iter()
                .find(|c| c["case"] == *other)
                .unwrap_or_else(|| panic!("{scenario}/{name}: no case {other}"));
            Expected::recorded(&other["result"])
        }
        Some(Correction::SubsetWithBatch) => subset_with_batch(scenario, case),
        Some(Correction::AlsoDeletes(_)) => panic!("{scenario}/{name}: a delete fix"),
    }
}

/// The corrected E `iii_subset_*`: the `.opus` single at 850.727, the range batch
/// 870.727-885.727 (requested by its interior 875.727) and the `.batch.enc` at 920.727, in
/// that order, with silence in the holes when gaps are filled. Built from the committed
/// objects, each piece checked against the digest Omi's code recorded in `objects.json` (the
/// Opus decode against libopus 1.3.1's, the sealed frame's plaintext against Omi's
/// decryption), so the model rests on the fixture, not on the code under test.
fn subset_with_batch(scenario: &str, case: &Value) -> Expected {
    let dir = format!("chunks/{OMI_UID}/conv-e/");
    // (requested timestamp, object, its start in ms)
    let pieces = [
        (
            "1786961850.727",
            "1786961850.727.opus",
            1_786_961_850_727_u64,
        ),
        (
            "1786961875.727",
            "1786961870.727-1786961885.727.batch.bin",
            1_786_961_870_727,
        ),
        (
            "1786961920.727",
            "1786961920.727.batch.enc",
            1_786_961_920_727,
        ),
    ];
    let requested: Vec<&str> = pieces.iter().map(|p| p.0).collect();
    assert_eq!(
        timestamps_arg(case),
        requested.join(","),
        "{scenario}/{}: the model is of this request",
        case["case"]
    );
    let objects = expected_json(scenario, "objects.json");
    let entry = |name: &str| -> &Value {
        cases(&objects)
            .iter()
            .find(|o| o["name"] == name)
            .unwrap_or_else(|| panic!("{name} not in objects.json"))
    };
    let bytes_per_ms = case["sample_rate"].as_u64().expect("rate") * 2 / 1000;
    let mut pcm: Vec<u8> = Vec::new();
    let mut end_ms: Option<u64> = None;
    for (_, object, start_ms) in pieces {
        let name = format!("{dir}{object}");
        let recorded = entry(&name);
        let bytes = std::fs::read(vectors_dir().join(scenario).join("bucket").join(&name))
            .expect("read bucket object");
        assert_eq!(
            Some(sha256_hex(&bytes).as_str()),
            recorded["sha256"].as_str()
        );
        let (audio, digest) = if object.ends_with(".opus") {
            let audio = chunk_service::codec::opus::decode_omi_opus(&bytes).expect("opus");
            (audio, &recorded["opus_decoded"]["sha256"])
        } else if object.ends_with(".enc") {
            let secret = chunk_crypto::MasterSecret::new(OMI_SECRET.as_bytes().to_vec())
                .expect("Omi's secret");
            let key = chunk_crypto::UserKey::derive(&secret, OMI_UID);
            let frames = chunk_crypto::omi::open_object(&key, &bytes)
                .collect::<Result<Vec<_>, _>>()
                .expect("sealed frames open");
            (frames.concat(), &recorded["plaintext_sha256"])
        } else {
            (bytes, &recorded["sha256"])
        };
        assert_eq!(
            Some(sha256_hex(&audio).as_str()),
            digest.as_str(),
            "{name}: decoded as Omi decoded it"
        );
        if case["fill_gaps"] == true
            && let Some(end_ms) = end_ms
        {
            let hole = start_ms.checked_sub(end_ms).expect("pieces in time order") * bytes_per_ms;
            pcm.resize(pcm.len() + hole as usize, 0);
        }
        end_ms = Some(start_ms + audio.len() as u64 / bytes_per_ms);
        pcm.extend_from_slice(&audio);
    }
    Expected::of_pcm(&pcm)
}

/// The `rm` command line replaying delete case `case`: `--timestamps` for Omi's
/// `delete_audio_chunks`, `--all` for `delete_conversation_audio_files`.
pub(crate) fn rm_args(case: &Value) -> Vec<String> {
    let conversation = case["conversation_id"].as_str().expect("conversation");
    let mut args: Vec<String> = ["rm", "--uid", OMI_UID, "--conversation", conversation]
        .map(str::to_owned)
        .into();
    match case["fn"].as_str() {
        Some("delete_audio_chunks") => {
            args.extend(["--timestamps".to_owned(), timestamps_arg(case)]);
        }
        Some("delete_conversation_audio_files") => args.push("--all".to_owned()),
        other => panic!("unknown delete function {other:?}"),
    }
    args
}

fn names(list: &Value) -> BTreeSet<String> {
    list.as_array()
        .expect("object names")
        .iter()
        .map(|n| n.as_str().expect("name").to_owned())
        .collect()
}

/// What chunkvault's `rm` must delete for delete case `case` of `scenario`, and what it must
/// leave in the whole bucket: Omi's `deleted` and `remaining`, with the range batch moved
/// from the one to the other where Omi's start-only matching is a bug.
pub(crate) fn expected_delete(
    scenario: &str,
    case: &Value,
) -> (BTreeSet<String>, BTreeSet<String>) {
    let name = case["case"].as_str().expect("case name");
    let mut deleted = names(&case["deleted"]);
    let mut remaining = names(&case["remaining"]);
    match correction(scenario, name) {
        None => {}
        Some(Correction::AlsoDeletes(path)) => {
            assert!(
                remaining.remove(*path),
                "{scenario}/{name}: {path} not left by Omi"
            );
            deleted.insert((*path).to_owned());
        }
        Some(fix) => panic!("{scenario}/{name}: {fix:?} is a download fix"),
    }
    (deleted, remaining)
}

/// Every object name in the store at `uri`, all prefixes.
pub(crate) fn store_objects(uri: &str) -> BTreeSet<String> {
    let store = chunk_store::Store::from_uri(uri).expect("store opens");
    let listing = block_on(store.list_prefix("")).expect("list the store");
    assert!(listing.foreign.is_empty(), "{:?}", listing.foreign);
    listing.objects.into_iter().map(|(path, _)| path).collect()
}

/// Runs delete case `case` of `scenario` as `rm --json` (with Omi's secret) on a store
/// holding the scenario's bucket, and asserts what it reports deleted, what is left in the
/// whole store, and what `ls` shows of the conversation afterwards.
pub(crate) fn assert_delete(cli: &StoreCli<'_>, label: &str, scenario: &str, case: &Value) {
    let what = format!("{label} {scenario} rm {}", case["case"]);
    let (deleted, remaining) = expected_delete(scenario, case);
    let args = rm_args(case);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let report = cli.json(Some(OMI_SECRET), &args);
    if args.contains(&"--all") {
        assert_eq!(report["deleted_count"], deleted.len(), "{what}: {report}");
    } else {
        assert_eq!(names(&report["deleted"]), deleted, "{what}: {report}");
        assert_eq!(report["written"], serde_json::json!([]), "{what}: {report}");
    }
    assert_eq!(store_objects(cli.uri()), remaining, "{what}: what is left");
    let conversation = case["conversation_id"].as_str().expect("conversation");
    let prefix = format!("chunks/{OMI_UID}/{conversation}/");
    let listing = ls_json(cli, conversation);
    let listed: BTreeSet<String> = ["chunks", "foreign"]
        .iter()
        .flat_map(|part| listing[*part].as_array().expect("entries").iter())
        .map(|e| e["path"].as_str().expect("path").to_owned())
        .collect();
    let expected: BTreeSet<String> = remaining
        .iter()
        .filter(|n| {
            n.strip_prefix(&prefix)
                .is_some_and(|rest| !rest.contains('/'))
        })
        .cloned()
        .collect();
    assert_eq!(listed, expected, "{what}: ls afterwards");
}
