//! `--keyring` and `chunkvault keys new`, through the binary: a keyring made from scratch,
//! rotation that keeps old audio readable, Omi's secret held in a keyring, and errors that
//! never show a secret.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::*;

/// Writes `text` to `path`, readable by its owner only.
fn write_private(path: &std::path::Path, text: &str) {
    std::fs::write(path, text).expect("write");
    std::fs::set_permissions(path, PermissionsExt::from_mode(0o600)).expect("chmod");
}

/// The end of the audio [`ingested`] writes (T0 + 23 s).
const END: &str = "1786961868.727";

/// `ingested` at level enhanced, in `layout`, with `extra` global options.
fn ingest(sandbox: &Sandbox, conversation: &str, layout: &str, extra: &[&str]) -> Vec<u8> {
    let options = [&["--level", "enhanced", "--layout", layout][..], extra].concat();
    ingested(sandbox, conversation, &options, None)
}

/// A PCM export of all of `conversation` (user `u1`) with `extra` global options.
fn export(sandbox: &Sandbox, conversation: &str, extra: &[&str]) -> std::process::Output {
    let args = ["--from", T0, "--to", END, "--format", "pcm", "-o", "-"];
    sandbox.export(conversation, &[&args[..], extra].concat())
}

#[test]
fn a_keyring_is_made_rotated_and_reads_everything_it_sealed() {
    let sandbox = Sandbox::new();
    let keyring = sandbox.path("keys.txt").display().to_string();
    let with_ring = ["--keyring", keyring.as_str()];
    failure(sandbox.run(&["keys", "new"]), "--keyring");

    let created = sandbox.json(&["keys", "new", "--keyring", &keyring]);
    assert_eq!(created["created"], true);
    assert_eq!(
        (created["active"].as_str(), created["omi"].as_str()),
        (Some("k1"), Some("k1"))
    );
    let mode = std::fs::metadata(&keyring).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "only the owner may read a keyring");
    let text = std::fs::read_to_string(&keyring).unwrap();
    assert!(
        text.starts_with("chunkvault-keyring 1\nactive k1\nomi k1\nkey k1 "),
        "{text}"
    );

    let first = ingest(&sandbox, "c1", "pack", &with_ring);
    let out = export(&sandbox, "c1", &with_ring);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, first);

    // Rotation: k2 becomes active, the Omi key stays k1, k1 still opens what it sealed.
    let rotated = sandbox.json(&["keys", "new", "--keyring", &keyring]);
    assert_eq!(rotated["created"], false);
    assert_eq!(rotated["active"], "k2");
    assert_eq!(rotated["omi"], "k1");
    assert_eq!(rotated["keys"], serde_json::json!(["k1", "k2"]));
    let second = ingest(&sandbox, "c2", "pack", &with_ring);
    for (conversation, pcm) in [("c1", &first), ("c2", &second)] {
        let out = export(&sandbox, conversation, &with_ring);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(&out.stdout, pcm, "{conversation}");
    }
    // The environment variable works as the flag does.
    let out = sandbox
        .cmd()
        .env("CHUNKVAULT_KEYRING", &keyring)
        .args([
            "export",
            "--uid",
            "u1",
            "--conversation",
            "c2",
            "--from",
            T0,
        ])
        .args(["--to", END, "--format", "pcm", "-o", "-"])
        .output()
        .unwrap();
    assert_eq!(out.stdout, second);
    // Secrets never reach the output of `keys`.
    let secrets: Vec<&str> = text.lines().filter_map(|l| l.rsplit(' ').next()).collect();
    let printed = sandbox.ok(&["keys", "new", "--keyring", &keyring]);
    for secret in secrets.iter().filter(|s| s.len() >= 64) {
        assert!(!printed.contains(secret));
    }
}

#[test]
fn omi_secret_in_a_keyring_reads_what_the_single_secret_sealed() {
    let sandbox = Sandbox::new();
    write_private(&sandbox.path("secret"), OMI_SECRET);
    let pcm = ingest(&sandbox, "omi", "omi", &["--secret-file", "secret"]);
    let keyring = sandbox.path("keys.txt");
    write_private(
        &keyring,
        &format!(
            "chunkvault-keyring 1\n# Omi's ENCRYPTION_SECRET, as hex\nactive k1\nomi k1\nkey k1 {}\n",
            hex::encode(OMI_SECRET)
        ),
    );
    let keyring = keyring.display().to_string();
    let out = export(&sandbox, "omi", &["--keyring", &keyring]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, pcm);
}

#[test]
fn bad_keyrings_fail_in_one_line_without_the_secret() {
    let sandbox = Sandbox::new();
    let keyring = sandbox.path("keys.txt");
    let secret = "ab".repeat(31) + "Q";
    write_private(
        &keyring,
        &format!("chunkvault-keyring 1\nactive k1\nomi k1\nkey k1 {secret}\n"),
    );
    let keyring = keyring.display().to_string();
    let ls = [
        "ls",
        "--uid",
        "u1",
        "--conversation",
        "c",
        "--keyring",
        &keyring,
    ];
    let line = failure(sandbox.run(&ls), "line 4");
    assert!(!line.contains(&secret) && !line.contains("abab"), "{line}");
    // A keyring and a single secret together are refused.
    let out = sandbox
        .cmd()
        .env("CHUNKVAULT_SECRET", SECRET)
        .args(ls)
        .output()
        .unwrap();
    failure(out, "use one");
}
