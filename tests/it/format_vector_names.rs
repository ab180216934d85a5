//! `chunk-format` against the objects Omi's own code wrote (tests/fixtures/omi/vectors):
//! every name under `bucket/chunks/` parses to the kind its extension says (strays are foreign),
//! every listed path agrees with `expected/list.json`, every plaintext Opus container has the
//! facts `expected/objects.json` records, and every encrypted object's frame structure matches.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use chunk_format::frames::{FrameError, Frames};
use chunk_format::omi_opus::OpusContainer;
use chunk_format::{ObjectKind, ObjectName, Timestamp};
use serde_json::Value;

/// Omi's six extensions in its longest-first matching order, with the kind each one means.
const OMI_EXTENSIONS: [(&str, ObjectKind); 6] = [
    (".batch.enc", ObjectKind::BatchEnc),
    (".batch.bin", ObjectKind::BatchBin),
    (".opus.enc", ObjectKind::OpusEnc),
    (".opus", ObjectKind::Opus),
    (".enc", ObjectKind::Enc),
    (".bin", ObjectKind::Bin),
];

/// The strays scenario E places next to real chunks; Omi's listing skips them.
const STRAYS: [&str; 3] = ["1000.000.meta.json", "notes.txt", "abc.bin"];

fn scenarios_dir() -> PathBuf {
    chunkvault_tests::fixtures_dir().join("omi/vectors/scenarios")
}

fn scenarios() -> Vec<PathBuf> {
    let dir = scenarios_dir();
    let mut found: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.join("bucket").is_dir())
        .collect();
    found.sort();
    assert_eq!(
        found.len(),
        5,
        "expected scenarios A-E under {}",
        dir.display()
    );
    found
}

/// Every file below `dir`, as paths relative to `root` with `/` separators.
fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
    let entries =
        fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            walk(root, &path, out);
        } else {
            let relative = path.strip_prefix(root).expect("walked below root");
            let parts: Vec<_> = relative
                .iter()
                .map(|p| p.to_str().expect("UTF-8 fixture path"))
                .collect();
            out.push(parts.join("/"));
        }
    }
}

fn read_json(path: &Path) -> Value {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// What the name should parse to, decided from Omi's own rule: an Omi extension (longest first)
/// whose stem is `TS` or `TS-TS`.
fn omi_kind(file_name: &str) -> Option<ObjectKind> {
    let (stem, kind) = OMI_EXTENSIONS
        .iter()
        .find_map(|&(ext, kind)| Some((file_name.strip_suffix(ext)?, kind)))?;
    let is_ts = |text: &str| text.parse::<Timestamp>().is_ok();
    let valid = match stem.split_once('-') {
        Some((first, last)) => kind.is_batch() && is_ts(first) && is_ts(last),
        None => is_ts(stem),
    };
    valid.then_some(kind)
}

#[test]
fn every_chunk_name_parses_to_its_extension_kind() {
    let mut strays = BTreeSet::new();
    let mut audio = 0;
    let mut kinds = BTreeSet::new();
    for scenario in scenarios() {
        let bucket = scenario.join("bucket");
        let mut objects = Vec::new();
        walk(&bucket, &bucket.join("chunks"), &mut objects);
        assert!(
            !objects.is_empty(),
            "{}: no chunk objects",
            scenario.display()
        );
        for object in objects {
            let file_name = object.rsplit('/').next().unwrap();
            let parsed = file_name.parse::<ObjectName>();
            match omi_kind(file_name) {
                Some(kind) => {
                    let name = parsed.unwrap_or_else(|e| panic!("{object}: {e}"));
                    assert_eq!(name.kind(), kind, "{object}");
                    assert_eq!(name.to_string(), file_name, "{object}");
                    kinds.insert(kind);
                    audio += 1;
                }
                None => {
                    assert!(
                        parsed.is_err(),
                        "{object} should be foreign, got {parsed:?}"
                    );
                    strays.insert(file_name.to_owned());
                }
            }
        }
    }
    assert_eq!(strays, STRAYS.iter().map(|s| s.to_string()).collect());
    assert_eq!(audio, 12 + 1 + 1 + 3 + 13, "audio objects in A, B, C, D, E");
    // A-E hold every Omi kind.
    assert_eq!(kinds.len(), 6, "{kinds:?}");
}

#[test]
fn listed_paths_agree_with_omi_listing() {
    let mut checked = 0;
    for scenario in scenarios() {
        let listing = read_json(&scenario.join("expected/list.json"));
        for (conversation, entries) in listing.as_object().unwrap() {
            for entry in entries.as_array().unwrap() {
                let path = entry["path"].as_str().unwrap();
                let file_name = path.rsplit('/').next().unwrap();
                let name: ObjectName = file_name
                    .parse()
                    .unwrap_or_else(|e| panic!("{conversation}: listed {path}: {e}"));
                // Omi lists a range batch once, under its start, as a float.
                assert_eq!(
                    name.start().as_f64(),
                    entry["timestamp"].as_f64().unwrap(),
                    "{path}"
                );
                assert_eq!(
                    Timestamp::from_f64(entry["timestamp"].as_f64().unwrap()),
                    Ok(name.start())
                );
                assert_eq!(
                    name.kind().is_batch(),
                    entry["is_batch"].as_bool().unwrap(),
                    "{path}"
                );
                let size = fs::metadata(scenario.join("bucket").join(path))
                    .unwrap()
                    .len();
                assert_eq!(size, entry["size"].as_u64().unwrap(), "{path}");
                checked += 1;
            }
        }
    }
    assert!(checked >= 30, "only {checked} listed entries");
}

#[test]
fn opus_containers_and_frames_match_objects_json() {
    let mut opus_checked = 0;
    let mut framed_checked = 0;
    for scenario in scenarios() {
        let objects = read_json(&scenario.join("expected/objects.json"));
        for object in objects.as_array().unwrap() {
            let name = object["name"].as_str().unwrap();
            let bytes = fs::read(scenario.join("bucket").join(name)).unwrap();
            assert_eq!(
                bytes.len() as u64,
                object["size"].as_u64().unwrap(),
                "{name}"
            );

            if let Some(frames) = object.get("frames").and_then(Value::as_array) {
                let found: Vec<_> = Frames::new(&bytes).collect();
                assert_eq!(found.len(), frames.len(), "{name}");
                for (expected, found) in frames.iter().zip(&found) {
                    let offset = expected["offset"].as_u64().unwrap() as usize;
                    let length_field = expected["length_field"].as_u64().unwrap();
                    match expected.get("consumed") {
                        Some(consumed) => {
                            let frame = found.as_ref().unwrap();
                            assert_eq!(frame.offset, offset, "{name}");
                            assert_eq!(frame.body.len() as u64, length_field, "{name}");
                            assert_eq!(frame.encoded_len() as u64, consumed.as_u64().unwrap());
                        }
                        // The truncated `.enc` of scenario E: the frame runs past the end.
                        None => assert!(
                            matches!(
                                found,
                                Err(FrameError::LengthPastEnd { offset: o, declared, .. })
                                    if *o == offset && u64::from(*declared) == length_field
                            ),
                            "{name}: {found:?}"
                        ),
                    }
                }
                framed_checked += 1;
            }

            let Some(opus) = object.get("opus") else {
                continue;
            };
            let fact = |key: &str| opus[key].as_u64().unwrap();
            if name.ends_with(".opus.enc") {
                // Sealed: check the one frame holds nonce + a container of that length + tag.
                let frame = Frames::new(&bytes).next().unwrap().unwrap();
                assert_eq!(
                    frame.body.len() as u64,
                    12 + fact("container_len") + 16,
                    "{name}"
                );
                continue;
            }
            let container = OpusContainer::parse(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(
                u64::from(container.packet_count()),
                fact("packet_count"),
                "{name}"
            );
            assert_eq!(container.packet_count(), 250, "{name}: 250 packets per 5 s");
            assert_eq!(
                u64::from(container.original_pcm_len()),
                fact("original_pcm_len")
            );
            assert_eq!(
                container.container_len() as u64,
                fact("container_len"),
                "{name}"
            );
            assert_eq!(
                container.trailing_bytes() as u64,
                fact("trailing_bytes"),
                "{name}"
            );
            let lens: Vec<u64> = container.packets().map(|p| p.len() as u64).collect();
            assert_eq!(
                lens.iter().min().copied(),
                Some(fact("packet_len_min")),
                "{name}"
            );
            assert_eq!(
                lens.iter().max().copied(),
                Some(fact("packet_len_max")),
                "{name}"
            );
            let decoded = object["opus_decoded"]["len"].as_u64().unwrap();
            assert_eq!(container.decoded_pcm_len(), decoded, "{name}");
            opus_checked += 1;
        }
    }
    assert_eq!(opus_checked, 12 + 4, "plaintext .opus objects in A and E");
    assert!(framed_checked >= 8, "only {framed_checked} framed objects");
}
