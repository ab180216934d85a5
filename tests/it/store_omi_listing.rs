//! The store lists Omi's own buckets exactly as Omi does.
//!
//! For every scenario and conversation in `expected/list.json`, `list_conversation` over the
//! committed bucket (fs backend) returns the same entries in the same order: path, size,
//! start timestamp (the exact f64 Omi's Python produced) and `is_batch`. Stray objects that
//! Omi skips silently are reported as foreign instead.
//!
//! The bucket is read in place; in-progress writes (there are none) would go to a temporary
//! `atomic_write_dir`, so the test never writes into the repository.

use std::collections::BTreeSet;

use chunk_store::{ConversationId, Store, UserId};
use chunkvault_tests::omi::{ListEntry, Scenario};

fn open_bucket(scenario: &Scenario, scratch: &tempfile::TempDir) -> Store {
    let uri = format!(
        "fs://{}?atomic_write_dir={}",
        scenario.bucket_dir().display(),
        scratch.path().join("tmp").display()
    );
    Store::from_uri(&uri).unwrap_or_else(|e| panic!("scenario {}: {e}", scenario.name))
}

#[tokio::test]
async fn every_vector_listing_matches_omi() {
    let scratch = tempfile::tempdir().expect("temp dir");
    let mut conversations = 0;
    let mut entries = 0;
    for scenario in Scenario::load_all().expect("scenarios load") {
        let store = open_bucket(&scenario, &scratch);
        let uid = UserId::new(scenario.chunks.uid.as_str()).expect("fixture uid is valid");
        for (conv_id, expected) in &scenario.list {
            let conv = ConversationId::new(conv_id.as_str()).expect("fixture conversation id");
            let listing = store
                .list_conversation(&uid, &conv)
                .await
                .unwrap_or_else(|e| panic!("{} {conv_id}: {e}", scenario.name));
            let got: Vec<ListEntry> = listing
                .objects
                .iter()
                .map(|o| ListEntry {
                    timestamp: o.start().as_f64(),
                    path: o.path.clone(),
                    size: o.size,
                    is_batch: o.is_batch(),
                })
                .collect();
            assert_eq!(&got, expected, "scenario {} {conv_id}", scenario.name);
            // PartialEq on f64 already compares values; make "the same float" explicit.
            for (g, e) in got.iter().zip(expected) {
                assert_eq!(g.timestamp.to_bits(), e.timestamp.to_bits(), "{}", e.path);
            }
            let foreign: BTreeSet<&str> = listing
                .foreign
                .iter()
                .map(|f| f.path.rsplit('/').next().unwrap_or(&f.path))
                .collect();
            let expected_foreign: BTreeSet<&str> = if scenario.name == "E" && conv_id == "conv-e" {
                ["1000.000.meta.json", "notes.txt", "abc.bin"].into()
            } else {
                BTreeSet::new()
            };
            assert_eq!(
                foreign, expected_foreign,
                "scenario {} {conv_id}",
                scenario.name
            );
            for f in &listing.foreign {
                assert!(
                    f.path.starts_with(&format!("chunks/{uid}/{conv_id}/")),
                    "{}",
                    f.path
                );
                assert!(!f.reason.is_empty());
            }
            conversations += 1;
            entries += got.len();
        }
    }
    // Scenarios A–E: six conversations, thirty entries in all.
    assert_eq!((conversations, entries), (6, 30));
}

/// Every audio object in the buckets is listed somewhere, and nothing under `chunks/` is lost:
/// listed audio + foreign = every file under the user's `chunks/` prefix.
#[tokio::test]
async fn listings_account_for_every_chunk_object() {
    let scratch = tempfile::tempdir().expect("temp dir");
    for scenario in Scenario::load_all().expect("scenarios load") {
        let store = open_bucket(&scenario, &scratch);
        let uid = UserId::new(scenario.chunks.uid.as_str()).expect("fixture uid");
        let mut listed = BTreeSet::new();
        for conv_id in scenario.list.keys() {
            let conv = ConversationId::new(conv_id.as_str()).expect("conversation id");
            let listing = store.list_conversation(&uid, &conv).await.expect("list");
            listed.extend(listing.objects.into_iter().map(|o| o.path));
            listed.extend(listing.foreign.into_iter().map(|f| f.path));
        }
        let all: BTreeSet<String> = store
            .list_prefix(&format!("chunks/{uid}/"))
            .await
            .expect("list prefix")
            .objects
            .into_iter()
            .map(|(path, _)| path)
            .collect();
        assert_eq!(listed, all, "scenario {}", scenario.name);
        let on_disk: BTreeSet<String> = scenario
            .bucket_object_names()
            .expect("bucket walk")
            .into_iter()
            .filter(|n| n.starts_with("chunks/"))
            .collect();
        assert_eq!(all, on_disk, "scenario {}", scenario.name);
    }
}
