//! `--keyring` and `chunkvault keys new`, through the binary: a keyring made from scratch,
//! rotation that keeps old audio readable, Omi's secret held in a keyring, and errors that
//! never show a secret.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::*;

/// `ingest` of `seconds` of the test signal into `conversation` of user `u`, sealed (level
/// enhanced), in `layout`, with `extra` global options; returns the PCM.
fn ingest(sandbox: &Sandbox, conversation: &str, layout: &str, extra: &[&str]) -> Vec<u8> {
    let pcm = signal(16_000 * 6);
    let wav = sandbox.path(&format!("{conversation}.wav"));
    write_wav(&wav, &pcm, 16_000, 1);
    let wav = wav.display().to_string();
    let args = [
        "ingest",
        "--uid",
        "u",
        "--conversation",
        conversation,
        "--start",
        T0,
        "--level",
        "enhanced",
        "--layout",
        layout,
        &wav,
    ];
    sandbox.ok(&[&args[..], extra].concat());
    pcm
}

fn export(sandbox: &Sandbox, conversation: &str, extra: &[&str]) -> std::process::Output {
    let args = [
        "export",
        "--uid",
        "u",
        "--conversation",
        conversation,
        "--from",
        T0,
        "--to",
        "1786961851.727",
        "--format",
        "pcm",
        "-o",
        "-",
    ];
    sandbox.run(&[&args[..], extra].concat())
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
        .args(["export", "--uid", "u", "--conversation", "c2", "--from", T0])
        .args(["--to", "1786961851.727", "--format", "pcm", "-o", "-"])
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
    let pcm = {
        let sandbox_secret = ["--secret-file", "secret"];
        std::fs::write(sandbox.path("secret"), OMI_SECRET).unwrap();
        std::fs::set_permissions(sandbox.path("secret"), PermissionsExt::from_mode(0o600)).unwrap();
        ingest(&sandbox, "omi", "omi", &sandbox_secret)
    };
    let keyring = sandbox.path("keys.txt");
    std::fs::write(
        &keyring,
        format!(
            "chunkvault-keyring 1\n# Omi's ENCRYPTION_SECRET, as hex\nactive k1\nomi k1\nkey k1 {}\n",
            hex::encode(OMI_SECRET)
        ),
    )
    .unwrap();
    std::fs::set_permissions(&keyring, PermissionsExt::from_mode(0o600)).unwrap();
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
    std::fs::write(
        &keyring,
        format!("chunkvault-keyring 1\nactive k1\nomi k1\nkey k1 {secret}\n"),
    )
    .unwrap();
    std::fs::set_permissions(&keyring, PermissionsExt::from_mode(0o600)).unwrap();
    let keyring = keyring.display().to_string();
    let line = failure(
        sandbox.run(&[
            "ls",
            "--uid",
            "u",
            "--conversation",
            "c",
            "--keyring",
            &keyring,
        ]),
        "line 4",
    );
    assert!(!line.contains(&secret) && !line.contains("abab"), "{line}");
    // A keyring and a single secret together are refused.
    let out = sandbox
        .cmd()
        .env("CHUNKVAULT_SECRET", SECRET)
        .args([
            "ls",
            "--uid",
            "u",
            "--conversation",
            "c",
            "--keyring",
            &keyring,
        ])
        .output()
        .unwrap();
    failure(out, "use one");
}
