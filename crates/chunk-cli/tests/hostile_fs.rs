//! The `chunkvault` binary on fs stores that someone else can write into: symbolic links at
//! every level of the layout never take a command outside the store root, and `export -o`
//! never replaces anything but a regular file. Every case puts a "victim" directory outside
//! the store (in the test's own temp dir) and checks that it is untouched.

mod common;

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use common::*;

/// A directory outside the store with files that must survive, and a subdirectory.
struct Victim {
    dir: PathBuf,
}

impl Victim {
    fn new(sandbox: &Sandbox) -> Victim {
        let dir = sandbox.path("victim");
        std::fs::create_dir_all(dir.join("sub")).expect("mkdir");
        std::fs::write(dir.join("1786961845.727.bin"), [7u8; 320]).expect("write");
        std::fs::write(dir.join("precious.txt"), b"keep me").expect("write");
        std::fs::write(dir.join("sub/deeper.txt"), b"keep me too").expect("write");
        Victim { dir }
    }

    fn assert_untouched(&self) {
        let mut names: Vec<String> = walk(&self.dir);
        names.sort();
        assert_eq!(
            names,
            ["1786961845.727.bin", "precious.txt", "sub/deeper.txt"],
            "the directory outside the store changed"
        );
        assert_eq!(
            std::fs::read(self.dir.join("precious.txt")).expect("read"),
            b"keep me"
        );
    }
}

fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
        let path = entry.path();
        let name = path.strip_prefix(dir).expect("under").display().to_string();
        if entry.file_type().expect("type").is_dir() {
            out.extend(walk(&path).into_iter().map(|n| format!("{name}/{n}")));
        } else {
            out.push(name);
        }
    }
    out
}

/// Makes the store's directories down to `chunks/u1/` and links `link` (relative to the
/// root) to the victim.
fn link_into_store(sandbox: &Sandbox, victim: &Victim, link: &str) {
    let at = sandbox.store_root().join(link);
    std::fs::create_dir_all(at.parent().expect("parent")).expect("mkdir");
    symlink(&victim.dir, &at).expect("symlink");
}

#[test]
fn rm_all_through_a_linked_conversation_deletes_nothing_outside() {
    let sandbox = Sandbox::new();
    let victim = Victim::new(&sandbox);
    link_into_store(&sandbox, &victim, "chunks/u1/c");
    let out = sandbox.run(&["rm", "--uid", "u1", "--conversation", "c", "--all"]);
    failure(out, "symbolic link");
    victim.assert_untouched();
    // The link itself is left too: it is not ours to remove.
    assert!(
        sandbox
            .store_root()
            .join("chunks/u1/c")
            .symlink_metadata()
            .is_ok()
    );
}

#[test]
fn purge_through_linked_user_prefixes_deletes_nothing_outside() {
    for link in ["audio/u1", "chunks/u1"] {
        let sandbox = Sandbox::new();
        let victim = Victim::new(&sandbox);
        ingested(&sandbox, "real", OMI, None);
        if link == "audio/u1" {
            link_into_store(&sandbox, &victim, link);
        } else {
            // Move the real conversation aside and link the user's directory instead.
            let root = sandbox.store_root();
            std::fs::rename(root.join("chunks/u1"), root.join("chunks/u1-moved")).expect("mv");
            link_into_store(&sandbox, &victim, link);
        }
        let out = sandbox.run(&["purge", "--uid", "u1", "--yes"]);
        let line = failure(out, "symbolic link");
        assert!(!line.contains("verified empty"), "{line}");
        victim.assert_untouched();
    }
}

#[test]
fn a_link_inside_a_conversation_is_foreign_never_read_nor_removed() {
    let sandbox = Sandbox::new();
    let victim = Victim::new(&sandbox);
    let pcm = ingested(&sandbox, "c", OMI, None);
    let conv = sandbox.store_root().join("chunks/u1/c");
    // A name that parses as an Omi object, pointing at a file outside.
    symlink(
        victim.dir.join("precious.txt"),
        conv.join("1786961850.000.bin"),
    )
    .expect("symlink");
    // And a link to a directory.
    symlink(&victim.dir, conv.join("1786961851.000.bin")).expect("symlink");

    let listing = sandbox.json(&["ls", "--uid", "u1", "--conversation", "c"]);
    let foreign = listing["foreign"].as_array().expect("foreign");
    assert_eq!(foreign.len(), 2, "{listing}");
    for entry in foreign {
        assert!(
            entry["reason"]
                .as_str()
                .is_some_and(|r| r.contains("symbolic link")),
            "{entry}"
        );
    }
    // The export is the real audio only, and verify does not call the link ok.
    let out = sandbox.export(
        "c",
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
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout, pcm);
    let verify = sandbox.json(&["verify", "--uid", "u1"]);
    assert_eq!(verify["bad"], serde_json::json!([]), "{verify}");
    let foreign = verify["foreign"].as_array().expect("foreign");
    assert_eq!(foreign.len(), 2, "{verify}");
    assert!(foreign.iter().all(|f| {
        f["reason"]
            .as_str()
            .is_some_and(|r| r.contains("symbolic link"))
    }));
    // rm --all removes the real objects, refuses to report the prefix empty, and leaves the
    // links and what they point to alone.
    let out = sandbox.run(&["rm", "--uid", "u1", "--conversation", "c", "--all"]);
    failure(out, "purge of");
    victim.assert_untouched();
    assert!(conv.join("1786961850.000.bin").symlink_metadata().is_ok());
}

#[test]
fn ingest_never_writes_through_a_link() {
    let sandbox = Sandbox::new();
    let victim = Victim::new(&sandbox);
    link_into_store(&sandbox, &victim, "chunks/u1/c");
    let wav = sandbox.path("in.wav");
    write_wav(&wav, &signal(16_000 * 12), 16_000, 1);
    for layout in [&["--layout", "omi"][..], &[][..]] {
        let args = [
            &[
                "ingest",
                "--uid",
                "u1",
                "--conversation",
                "c",
                "--start",
                T0,
            ][..],
            layout,
            &[wav.to_str().expect("utf-8")],
        ]
        .concat();
        failure(sandbox.run(&args), "symbolic link");
        victim.assert_untouched();
    }
}

#[test]
fn export_replaces_regular_files_only() {
    let sandbox = Sandbox::new();
    let victim = Victim::new(&sandbox);
    let pcm = ingested(&sandbox, "c", &[], None);
    let export = |target: &Path| {
        sandbox.export(
            "c",
            &[
                "--from",
                T0,
                "--to",
                "1786961868.727",
                "--format",
                "pcm",
                "-o",
                target.to_str().expect("utf-8"),
            ],
        )
    };
    // A link to a file outside: refused, the file keeps its bytes.
    let link = sandbox.path("out-link.pcm");
    symlink(victim.dir.join("precious.txt"), &link).expect("symlink");
    failure(export(&link), "symbolic link");
    // A FIFO (as /dev/null is a device): refused, still a FIFO.
    let fifo = sandbox.path("out.fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo");
    assert!(made.success());
    failure(export(&fifo), "not a regular file");
    assert!(
        std::os::unix::fs::FileTypeExt::is_fifo(
            &fifo.symlink_metadata().expect("stat").file_type()
        ),
        "the FIFO was replaced"
    );
    // A directory: refused.
    failure(export(&victim.dir), "directory");
    victim.assert_untouched();
    // A regular file is replaced, as before.
    let file = sandbox.path("out.pcm");
    std::fs::write(&file, b"old").expect("write");
    assert!(export(&file).status.success());
    assert_eq!(std::fs::read(&file).expect("read"), pcm);
}

/// Two `ingest`s of different audio into one conversation at one `--start`, at the same time:
/// exactly one is stored and exits 0; the other fails with a conflict (it used to exit 0 too,
/// and one recording was gone).
#[test]
fn concurrent_ingests_at_one_start_never_both_succeed() {
    let sandbox = Sandbox::new();
    let wavs: Vec<String> = (0..2u8)
        .map(|i| {
            let wav = sandbox.path(&format!("in{i}.wav"));
            let pcm: Vec<u8> = signal(16_000 * 6)
                .into_iter()
                .map(|b| b.wrapping_add(i))
                .collect();
            write_wav(&wav, &pcm, 16_000, 1);
            wav.display().to_string()
        })
        .collect();
    for round in 0..10 {
        let conversation = format!("race-{round}");
        let children: Vec<std::process::Child> = wavs
            .iter()
            .map(|wav| {
                sandbox
                    .cmd()
                    .args([
                        "ingest",
                        "--uid",
                        "u1",
                        "--conversation",
                        &conversation,
                        "--start",
                        T0,
                        wav,
                    ])
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .expect("spawn")
            })
            .collect();
        let outcomes: Vec<std::process::Output> = children
            .into_iter()
            .map(|c| c.wait_with_output().expect("wait"))
            .collect();
        let succeeded = outcomes.iter().filter(|o| o.status.success()).count();
        assert_eq!(
            succeeded,
            1,
            "round {round}: {:?}",
            outcomes
                .iter()
                .map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
                .collect::<Vec<_>>()
        );
        let listing = sandbox.json(&["ls", "--uid", "u1", "--conversation", &conversation]);
        assert_eq!(listing["chunks"].as_array().map(Vec::len), Some(1));
    }
}
