//! Helpers shared by the `chunkvault` binary's integration tests: a sandbox with an fs store,
//! the test signal, WAV files, and assertions on exit status and one-line errors.

#![allow(dead_code)] // each test file uses its own part of the helpers

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use chunk_format::wav::wav_header;
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
