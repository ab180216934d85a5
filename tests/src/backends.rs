//! The backends every end-to-end suite runs against: fs (a temporary directory), memory, and
//! the S3 server named by `CHUNKVAULT_TEST_S3_URI` (Garage, started by `cargo xtask s3`).
//!
//! When the variable is unset the S3 backend is skipped with a printed line, unless
//! `CHUNKVAULT_REQUIRE_S3=1` (CI), where that is a failure. Each S3 case gets its own root so
//! cases never see each other's objects; Garage does not enforce `If-None-Match: *`, so
//! `create_only=stat` is added unless the URI picks a mode.

use std::time::{SystemTime, UNIX_EPOCH};

use chunk_store::Store;

/// A store under test and whatever keeps it alive.
pub struct TestBackend {
    /// `fs`, `memory` or `s3`.
    pub name: &'static str,
    /// The store.
    pub store: Store,
    _dir: Option<tempfile::TempDir>,
}

/// A fresh store per backend for the case `case`: fs, memory, and S3 when configured.
pub fn all(case: &str) -> Vec<TestBackend> {
    let dir = tempfile::tempdir().expect("temp dir");
    let fs = Store::from_uri(&format!("fs://{}", dir.path().join("bucket").display()))
        .expect("fs store opens");
    let mut backends = vec![
        TestBackend {
            name: "fs",
            store: fs,
            _dir: Some(dir),
        },
        TestBackend {
            name: "memory",
            store: Store::from_uri("memory://").expect("memory store opens"),
            _dir: None,
        },
    ];
    if let Some(uri) = s3_uri(case) {
        let store = Store::from_uri(&uri).unwrap_or_else(|e| panic!("s3 store opens: {e}"));
        backends.push(TestBackend {
            name: "s3",
            store,
            _dir: None,
        });
    }
    backends
}

/// The S3 URI for `case` (own root, `create_only=stat`), or `None` when S3 is not configured
/// and not required.
pub fn s3_uri(case: &str) -> Option<String> {
    let Some(uri) = std::env::var("CHUNKVAULT_TEST_S3_URI")
        .ok()
        .filter(|u| !u.is_empty())
    else {
        assert!(
            std::env::var("CHUNKVAULT_REQUIRE_S3").as_deref() != Ok("1"),
            "CHUNKVAULT_REQUIRE_S3=1 but CHUNKVAULT_TEST_S3_URI is not set: start the server \
             with `eval \"$(cargo xtask s3)\"`"
        );
        eprintln!("skipped: s3 {case} (CHUNKVAULT_TEST_S3_URI is not set)");
        return None;
    };
    Some(case_uri(&uri, case))
}

/// Puts case `case` under its own root (`s3://bucket/it-<case>-<pid>-<nanos>?…`) and adds
/// `create_only=stat` unless the URI picks a mode.
pub fn case_uri(uri: &str, case: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let root = format!("it-{case}-{}-{nanos}", std::process::id());
    let (base, query) = uri.split_once('?').unwrap_or((uri, ""));
    let mut query = query.to_owned();
    if !query.contains("create_only=") {
        if !query.is_empty() {
            query.push('&');
        }
        query.push_str("create_only=stat");
    }
    format!("{}/{root}?{query}", base.trim_end_matches('/'))
}
