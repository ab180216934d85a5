//! The backends every end-to-end suite runs against: fs (a temporary directory), memory, and
//! the real servers that `cargo xtask` starts on loopback:
//!
//! | backend | variable | server | started by |
//! |---|---|---|---|
//! | `s3` | `CHUNKVAULT_TEST_S3_URI` | Garage 2.5.0 | `cargo xtask s3` |
//! | `gcs` | `CHUNKVAULT_TEST_GCS_URI` | fake-gcs-server 1.54.0 | `cargo xtask gcs` |
//! | `azblob` | `CHUNKVAULT_TEST_AZBLOB_URI` | Azurite 3.35.0 | `cargo xtask azure` |
//!
//! When a variable is unset its backend is skipped with a printed line, unless
//! `CHUNKVAULT_REQUIRE_<NAME>=1` (`S3`, `GCS`, `AZBLOB`; `cargo xtask ci` sets them), where
//! that is a failure. Each case gets its own root on the server so cases never see each
//! other's objects.
//!
//! [`all`] opens every backend for one case (a suite that loops over them); [`one`] opens one
//! backend by name (a suite with one test per case and backend, such as `service_matrix`).
//! Each [`TestBackend`] keeps the URI it was opened with, so a case can open the same bucket
//! again through [`Store::builder_from_uri`] with other options or a fault layer (`memory://`
//! opens a new, empty store each time).
//!
//! Each server's URI gets the store options the server needs, unless the URI sets them itself
//! ([`Server::options`]). Create-only writes, measured with two create-only PUTs of one path
//! (`store_behavior`'s `emulators_enforce_create_only_as_documented` keeps checking it):
//! - Garage accepts `If-None-Match: *` and overwrites anyway: `create_only=stat`;
//! - fake-gcs-server ignores `ifGenerationMatch=0` on the resumable uploads OpenDAL sends for
//!   a conditional write (and on `uploadType=media`; only `uploadType=multipart` honours it):
//!   `create_only=stat`;
//! - Azurite refuses the second `If-None-Match: *` PUT with 409 `BlobAlreadyExists`, as Azure
//!   does: `create_only=native`, the default.
//!
//! fake-gcs-server also answers every sub-request of OpenDAL's batch delete with 400 ("unable
//! to process request"): each sub-request is a request line alone, and the emulator's parser
//! wants the empty line that ends a header block after it (the same batch with that line added
//! is accepted). OpenDAL's batch delete is GCS's JSON batch API as real GCS serves it. So the
//! GCS URI gets `batch_delete=false`: one DELETE per object.

use std::time::{SystemTime, UNIX_EPOCH};

use chunk_store::Store;

/// A store under test and whatever keeps it alive.
pub struct TestBackend {
    /// `fs`, `memory`, `s3`, `gcs` or `azblob`.
    pub name: &'static str,
    /// The store.
    pub store: Store,
    /// The URI `store` was opened with (on a server: the case's own root and the server's
    /// options). Opening it again reaches the same objects, except on `memory://`.
    pub uri: String,
    _dir: Option<tempfile::TempDir>,
}

impl TestBackend {
    /// A store in a fresh temporary directory (removed when the backend is dropped).
    pub fn fs() -> TestBackend {
        let dir = tempfile::tempdir().expect("temp dir");
        let uri = format!("fs://{}", dir.path().join("bucket").display());
        TestBackend {
            name: "fs",
            store: Store::from_uri(&uri).expect("fs store opens"),
            uri,
            _dir: Some(dir),
        }
    }

    /// A fresh in-process store.
    pub fn memory() -> TestBackend {
        let uri = "memory://".to_owned();
        TestBackend {
            name: "memory",
            store: Store::from_uri(&uri).expect("memory store opens"),
            uri,
            _dir: None,
        }
    }

    /// A store on `server` under a root of its own for `case`, or `None` when the server is
    /// not configured and not required.
    pub fn server(server: Server, case: &str) -> Option<TestBackend> {
        let uri = server_uri(server, case)?;
        Some(TestBackend {
            name: server.name,
            store: open_uri(server, &uri),
            uri,
            _dir: None,
        })
    }
}

/// One real server the suites can run against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Server {
    /// The backend's name (its URI scheme): `s3`, `gcs`, `azblob`.
    pub name: &'static str,
    /// The variable holding the server's store URI.
    pub uri_var: &'static str,
    /// The variable that, set to `1`, makes a missing URI a failure instead of a skip.
    pub require_var: &'static str,
    /// The xtask command that starts the server.
    pub xtask: &'static str,
    /// Store options added to the URI, each unless the URI names it (see the module docs).
    pub options: &'static [(&'static str, &'static str)],
}

/// Garage, through `cargo xtask s3`.
pub const S3: Server = Server {
    name: "s3",
    uri_var: "CHUNKVAULT_TEST_S3_URI",
    require_var: "CHUNKVAULT_REQUIRE_S3",
    xtask: "s3",
    options: &[("create_only", "stat")],
};

/// fake-gcs-server, through `cargo xtask gcs`.
pub const GCS: Server = Server {
    name: "gcs",
    uri_var: "CHUNKVAULT_TEST_GCS_URI",
    require_var: "CHUNKVAULT_REQUIRE_GCS",
    xtask: "gcs",
    options: &[("create_only", "stat"), ("batch_delete", "false")],
};

/// Azurite, through `cargo xtask azure`.
pub const AZBLOB: Server = Server {
    name: "azblob",
    uri_var: "CHUNKVAULT_TEST_AZBLOB_URI",
    require_var: "CHUNKVAULT_REQUIRE_AZBLOB",
    xtask: "azure",
    options: &[],
};

/// The real servers, in the order the suites run them.
pub const SERVERS: [Server; 3] = [S3, GCS, AZBLOB];

/// Every backend's name, in the order the suites run them: `fs`, `memory`, then [`SERVERS`].
pub const NAMES: [&str; 5] = ["fs", "memory", S3.name, GCS.name, AZBLOB.name];

/// A fresh store per backend for the case `case`: fs, memory, and each configured server.
pub fn all(case: &str) -> Vec<TestBackend> {
    NAMES.iter().filter_map(|name| one(name, case)).collect()
}

/// A fresh store on the backend named `name` (one of [`NAMES`]) for the case `case`, or
/// `None` when it is a server that is not configured and not required.
///
/// # Panics
///
/// When `name` is not one of [`NAMES`], or a required server is not configured.
pub fn one(name: &str, case: &str) -> Option<TestBackend> {
    match name {
        "fs" => Some(TestBackend::fs()),
        "memory" => Some(TestBackend::memory()),
        _ => {
            let server = SERVERS
                .into_iter()
                .find(|s| s.name == name)
                .unwrap_or_else(|| panic!("no backend named {name:?}; known: {NAMES:?}"));
            TestBackend::server(server, case)
        }
    }
}

/// A store on `server` under a root of its own for `case`, or `None` when the server is not
/// configured and not required.
pub fn open(server: Server, case: &str) -> Option<Store> {
    let uri = server_uri(server, case)?;
    Some(open_uri(server, &uri))
}

fn open_uri(server: Server, uri: &str) -> Store {
    Store::from_uri(uri).unwrap_or_else(|e| panic!("{} store opens: {e}", server.name))
}

/// The URI for `case` on `server` (own root, the server's options unless the URI sets them),
/// or `None` when the server is not configured and not required.
pub fn server_uri(server: Server, case: &str) -> Option<String> {
    let Some(uri) = std::env::var(server.uri_var).ok().filter(|u| !u.is_empty()) else {
        assert!(
            std::env::var(server.require_var).as_deref() != Ok("1"),
            "{}=1 but {} is not set: start the server with `eval \"$(cargo xtask {})\"`",
            server.require_var,
            server.uri_var,
            server.xtask
        );
        eprintln!(
            "skipped: {} {case} ({} is not set)",
            server.name, server.uri_var
        );
        return None;
    };
    Some(case_uri_with(&uri, case, server.options))
}

/// The S3 URI for `case` (own root, `create_only=stat`), or `None` when S3 is not configured
/// and not required.
pub fn s3_uri(case: &str) -> Option<String> {
    server_uri(S3, case)
}

/// The GCS URI for `case` (own root, `create_only=stat&batch_delete=false`), or `None` when
/// GCS is not configured and not required.
pub fn gcs_uri(case: &str) -> Option<String> {
    server_uri(GCS, case)
}

/// The Azure Blob URI for `case` (own root, native create-only), or `None` when Azure Blob is
/// not configured and not required.
pub fn azblob_uri(case: &str) -> Option<String> {
    server_uri(AZBLOB, case)
}

/// Puts case `case` under its own root (`s3://bucket/it-<case>-<pid>-<nanos>?…`) and adds
/// `create_only=stat` unless the URI picks a mode (Garage's need; see [`case_uri_with`]).
pub fn case_uri(uri: &str, case: &str) -> String {
    case_uri_with(uri, case, S3.options)
}

/// Puts case `case` under its own root (`<scheme>://<bucket>/it-<case>-<pid>-<nanos>?…`) and
/// adds each of `options` whose name the URI's query does not set.
pub fn case_uri_with(uri: &str, case: &str, options: &[(&str, &str)]) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let root = format!("it-{case}-{}-{nanos}", std::process::id());
    let (base, query) = uri.split_once('?').unwrap_or((uri, ""));
    let mut query = query.to_owned();
    for (name, value) in options {
        let named = query
            .split('&')
            .any(|pair| pair.split_once('=').map_or(pair, |(k, _)| k) == *name);
        if !named {
            if !query.is_empty() {
                query.push('&');
            }
            query.push_str(&format!("{name}={value}"));
        }
    }
    format!("{}/{root}?{query}", base.trim_end_matches('/'))
}
