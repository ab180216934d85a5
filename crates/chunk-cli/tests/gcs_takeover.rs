//! Taking over an Omi bucket on Google Cloud Storage (issue 17, item 5).
//!
//! Every scenario of Omi's compatibility vectors (A–E) is loaded into fake-gcs-server as
//! Omi's code left it: object names are the paths under `bucket/`, bytes as they are, each
//! object with the content type `expected/objects.json` records (the vectors carry no other
//! metadata: no v2 spans). Then the `chunkvault` binary runs on the `gcs://` store:
//! - `ls --json` of every conversation of `expected/list.json`;
//! - `export` of every download case of `expected/downloads.json` (Opus cases included: the
//!   default build's decoder is bit-exact with libopus 1.3.1 on every vector,
//!   docs/COMPATIBILITY.md), E's duplicate-timestamp and corrupt-`.enc` cases among them;
//! - `rm` of every delete case of `expected/delete.json` (by timestamps, and `--all` for
//!   `delete_conversation_audio_files`), each on a fresh copy of the bucket, checking what it
//!   reports deleted, every object left in the store, and `ls` afterwards.
//!
//! Results must equal the vectors' expected results, except where the recorded result is an
//! Omi bug that chunkvault fixes (`chunkvault_tests::omi::corrections`): there chunkvault's
//! documented result is asserted. That includes deletes: Omi's `delete_audio_chunks` matches range batches by
//! their start only (omi-layout.md §4.4), so an interior or end timestamp of a range batch
//! leaves the batch in Omi's `remaining`; chunkvault deletes it.
//!
//! The rules (requests, comparisons, corrections) are those of `common`, which the fs replay
//! of `cli.rs` uses too. The same full replay also runs here on an fs copy of each bucket, so
//! a difference between GCS and fs shows as exactly one of the two tests failing.
//!
//! GCS needs `cargo xtask gcs` (`CHUNKVAULT_TEST_GCS_URI`); without it the GCS test is
//! skipped with a printed line, unless `CHUNKVAULT_REQUIRE_GCS=1`.

mod common;

use std::collections::BTreeSet;

use chunk_store::Store;
use chunkvault_tests::backends;
use chunkvault_tests::omi::corrections::{CORRECTED, correction};
use common::*;
use serde_json::Value;

/// The scenarios, in order.
const SCENARIOS: [&str; 5] = ["A", "B", "C", "D", "E"];

/// What one replay compared.
#[derive(Debug, Default, PartialEq, Eq)]
struct Compared {
    conversations: usize,
    downloads: usize,
    deletes: usize,
    corrected: usize,
}

/// Replays every case of every scenario on stores made by `fresh(scenario, case)`, each a new
/// store holding the scenario's bucket (one for the reads, one per delete case).
fn replay(label: &str, sandbox: &Sandbox, fresh: &dyn Fn(&str, &str) -> String) -> Compared {
    let mut compared = Compared::default();
    for scenario in SCENARIOS {
        let cli = StoreCli::on(sandbox, fresh(scenario, "read"));
        compared.conversations += assert_listings_match(&cli, label, scenario);
        for case in cases(&expected_json(scenario, "downloads.json")) {
            let name = case["case"].as_str().expect("case name");
            compared.corrected += usize::from(correction(scenario, name).is_some());
            let expected = expected_download(scenario, case);
            assert_export(&cli, &format!("{label} {scenario}"), case, &expected);
            compared.downloads += 1;
        }
        for case in cases(&expected_json(scenario, "delete.json")) {
            let name = case["case"].as_str().expect("case name");
            compared.corrected += usize::from(correction(scenario, name).is_some());
            let cli = StoreCli::on(sandbox, fresh(scenario, name));
            assert_delete(&cli, label, scenario, case);
            compared.deletes += 1;
        }
    }
    compared
}

/// Every case of A–E ran, and every correction was used.
fn assert_all_compared(compared: Compared) {
    assert_eq!(
        compared,
        Compared {
            // A, B, C, D one conversation each; E `conv-e` and `conv-e2`.
            conversations: 6,
            // A 11, B 9, C 9, D 6, E 11.
            downloads: 46,
            // A 3, B 4, C 4, D 2, E 7 (one conversation delete each).
            deletes: 20,
            corrected: CORRECTED.len(),
        }
    );
}

/// A fresh fs store (a directory of the sandbox) holding `scenario`'s bucket.
fn fresh_fs(sandbox: &Sandbox, scenario: &str, case: &str) -> String {
    let root = sandbox.path(&format!("{scenario}-{case}"));
    copy_dir(&vectors_dir().join(scenario).join("bucket"), &root);
    format!("fs://{}", root.display())
}

/// Uploads `scenario`'s bucket to the empty store at `uri` as Omi's code left it: every object
/// `objects.json` describes (which must be every file of `bucket/`), under its name, with its
/// bytes and its content type, each checked back with a stat.
fn load_bucket(uri: &str, scenario: &str) {
    let store = Store::from_uri(uri).expect("store opens");
    assert!(store_objects(uri).is_empty(), "{uri}: a fresh root");
    let bucket = vectors_dir().join(scenario).join("bucket");
    let objects = expected_json(scenario, "objects.json");
    let objects = cases(&objects);
    let described: BTreeSet<String> = objects
        .iter()
        .map(|o| o["name"].as_str().expect("name").to_owned())
        .collect();
    let files: BTreeSet<String> = chunkvault_tests::omi::list_objects(&bucket)
        .expect("list bucket/")
        .into_iter()
        .collect();
    assert_eq!(
        described, files,
        "{scenario}: objects.json describes bucket/"
    );
    block_on(async {
        for object in objects {
            let name = object["name"].as_str().expect("name");
            let content_type = object["content_type"].as_str().expect("content_type");
            let bytes = std::fs::read(bucket.join(name)).expect("read bucket object");
            assert_eq!(
                Some(sha256_hex(&bytes).as_str()),
                object["sha256"].as_str(),
                "{name}: the committed bytes"
            );
            store
                .operator()
                .write_with(name, bytes)
                .content_type(content_type)
                .await
                .unwrap_or_else(|e| panic!("upload {name}: {e}"));
            let meta = store
                .operator()
                .stat(name)
                .await
                .unwrap_or_else(|e| panic!("stat {name}: {e}"));
            assert_eq!(
                Value::from(meta.content_length()),
                object["size"],
                "{name}: size"
            );
            assert_eq!(
                meta.content_type(),
                Some(content_type),
                "{name}: content type"
            );
        }
    });
    let loaded = store_objects(uri);
    assert_eq!(loaded, files, "{scenario}: the store holds the bucket");
}

#[test]
fn omi_bucket_taken_over_on_gcs_gives_the_vectors_results() {
    // `gcs_uri` prints the skip line (or fails when CHUNKVAULT_REQUIRE_GCS=1).
    if backends::gcs_uri("takeover-probe").is_none() {
        return;
    }
    let sandbox = Sandbox::new();
    let compared = replay("gcs", &sandbox, &|scenario, case| {
        let uri =
            backends::gcs_uri(&format!("takeover-{scenario}-{case}")).expect("GCS is configured");
        load_bucket(&uri, scenario);
        uri
    });
    assert_all_compared(compared);
}

#[test]
fn omi_bucket_taken_over_on_fs_gives_the_vectors_results() {
    let sandbox = Sandbox::new();
    let compared = replay("fs", &sandbox, &|scenario, case| {
        fresh_fs(&sandbox, scenario, case)
    });
    assert_all_compared(compared);
}
