//! Store URIs: which backend, where, and with which options.
//!
//! | URI | backend |
//! |---|---|
//! | `fs:///abs/path`, `fs://relative/path` | local directory (the embedded default); created if missing |
//! | `memory://` | in-process map, for tests |
//! | `s3://bucket[/root]?endpoint=…&region=…` | S3 and compatibles (cargo feature `s3`, on by default) |
//! | `gcs://bucket[/root]` | Google Cloud Storage (feature `gcs`) |
//! | `azblob://container[/root]?account_name=…&endpoint=…` | Azure Blob Storage (feature `azblob`) |
//!
//! Local emulators are the same schemes with an endpoint (the forms `cargo xtask gcs` and
//! `cargo xtask azure` print):
//! - fake-gcs-server: `gcs://bucket?endpoint=http://127.0.0.1:PORT&skip_signature=true`
//!   (`skip_signature`: unsigned requests, no credentials looked for); add
//!   `create_only=stat&batch_delete=false`, as it enforces no create-only write and cannot
//!   parse batch deletes;
//! - Azurite: `azblob://container?endpoint=http://127.0.0.1:PORT/devstoreaccount1`
//!   `&account_name=devstoreaccount1&account_key=…` (path-style endpoint: the account is its
//!   first path segment; the development account's published key).
//!
//! Query options of the cloud backends are OpenDAL's own config field names (`endpoint`,
//! `region`, `access_key_id`, `enable_virtual_host_style`, …); an unknown name is an error
//! that lists the known ones. Credentials not given in the URI come from the usual environment
//! variables, as OpenDAL loads them: S3 `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
//! `AWS_SESSION_TOKEN`, `AWS_REGION`, `AWS_PROFILE` (and instance roles); GCS
//! `GOOGLE_APPLICATION_CREDENTIALS` (and the VM's service account); Azure
//! `AZURE_STORAGE_ACCOUNT_NAME`, `AZURE_STORAGE_ACCOUNT_KEY`, `AZURE_STORAGE_SAS_TOKEN` (and a
//! service principal's `AZURE_CLIENT_ID`, `AZURE_TENANT_ID`, `AZURE_CLIENT_SECRET`). `chunkvault
//! --help` lists the same. The fs backend takes OpenDAL's `atomic_write_dir` (default
//! `<root>/.chunkvault-tmp`, which must be on the same file system as the root).
//!
//! Store options, valid on every backend:
//! - `create_only=native|stat`: how create-only writes are enforced (see
//!   [`crate::CreateOnlyMode`]); Garage needs `stat`.
//! - `timeout_secs`, `io_timeout_secs`: per-operation and per-I/O-step timeouts.
//! - `retry_max_times`: retries of temporary errors (0 disables retrying).
//! - `concurrency_limit`: most backend operations in flight at once.
//! - `batch_delete=true|false`: whether deletes and purges send many objects per request
//!   where the backend has a batch delete (default `true`; see
//!   [`crate::StoreOptions::batch_delete`]).
//!
//! Values are percent-decoded (`%2B` for `+`); `+` itself stays `+`, so secrets keep their
//! plus signs.

use std::collections::BTreeMap;
use std::time::Duration;

use opendal::{Configurator, Operator};

use crate::error::{Result, StoreError, StoreOp};
use crate::path::FS_TMP_DIR;
use crate::store::{CreateOnlyMode, StoreOptions};

/// Every URI form [`crate::Store::from_uri`] accepts, as error messages list them.
pub const ACCEPTED_URIS: &str = "fs:///abs/path, fs://relative/path, memory://, \
     s3://bucket?endpoint=…&region=… (feature s3), gcs://bucket (feature gcs), \
     azblob://container?account_name=…&endpoint=… (feature azblob); store options on any: \
     create_only=native|stat, timeout_secs=N, io_timeout_secs=N, retry_max_times=N, \
     concurrency_limit=N, batch_delete=true|false";

const STORE_KEYS: [&str; 6] = [
    "create_only",
    "timeout_secs",
    "io_timeout_secs",
    "retry_max_times",
    "concurrency_limit",
    "batch_delete",
];

const SECRET_MARKERS: [&str; 6] = ["secret", "key", "token", "credential", "password", "sas"];

/// A parsed URI: the bare operator (no store layers yet), the options, and the redacted URI.
pub(crate) struct ParsedUri {
    pub(crate) op: Operator,
    pub(crate) options: StoreOptions,
    pub(crate) display: String,
    /// The fs backend's `atomic_write_dir` when the URI names one.
    pub(crate) fs_temp_dir: Option<std::path::PathBuf>,
}

/// Returns `uri` with the values of secret-looking query options replaced by `***`.
pub fn redact(uri: &str) -> String {
    let Some((base, query)) = uri.split_once('?') else {
        return uri.to_owned();
    };
    let pairs: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((key, _)) if is_secret(key) => format!("{key}=***"),
            _ => pair.to_owned(),
        })
        .collect();
    format!("{base}?{}", pairs.join("&"))
}

fn is_secret(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    SECRET_MARKERS.iter().any(|marker| key.contains(marker))
}

struct UriError<'a> {
    display: &'a str,
}

impl UriError<'_> {
    fn err(&self, reason: impl Into<String>) -> StoreError {
        StoreError::BadUri {
            uri: self.display.to_owned(),
            reason: reason.into(),
        }
    }
}

/// Decodes `%XX` escapes; `+` is kept as is.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn parse_query(e: &UriError<'_>, query: &str) -> Result<BTreeMap<String, String>> {
    let mut map = BTreeMap::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let key = percent_decode(key)
            .ok_or_else(|| e.err(format!("option name {key:?} has a bad %-escape")))?;
        let value = percent_decode(value)
            .ok_or_else(|| e.err(format!("option {key:?} has a bad %-escape")))?;
        if key.is_empty() {
            return Err(e.err("empty option name"));
        }
        if map.insert(key.clone(), value).is_some() {
            return Err(e.err(format!("option {key:?} given twice")));
        }
    }
    Ok(map)
}

fn parse_secs(e: &UriError<'_>, key: &str, value: &str) -> Result<Duration> {
    let secs: f64 = value
        .parse()
        .map_err(|_| e.err(format!("{key}={value:?} is not a number of seconds")))?;
    if !(secs.is_finite() && secs > 0.0 && secs <= 86_400.0) {
        return Err(e.err(format!("{key}={value:?} must be in (0, 86400] seconds")));
    }
    Ok(Duration::from_secs_f64(secs))
}

fn parse_count(e: &UriError<'_>, key: &str, value: &str, min: usize) -> Result<usize> {
    match value.parse::<usize>() {
        Ok(n) if n >= min && n <= 1_000_000 => Ok(n),
        _ => Err(e.err(format!(
            "{key}={value:?} must be a whole number from {min} to 1000000"
        ))),
    }
}

/// Takes the store options out of `map`, leaving only backend options.
fn take_store_options(
    e: &UriError<'_>,
    map: &mut BTreeMap<String, String>,
) -> Result<StoreOptions> {
    let mut options = StoreOptions::default();
    if let Some(v) = map.remove("create_only") {
        options.create_only = match v.as_str() {
            "native" => CreateOnlyMode::Native,
            "stat" => CreateOnlyMode::StatThenWrite,
            _ => return Err(e.err(format!("create_only={v:?}: expected native or stat"))),
        };
    }
    if let Some(v) = map.remove("timeout_secs") {
        options.timeout = parse_secs(e, "timeout_secs", &v)?;
    }
    if let Some(v) = map.remove("io_timeout_secs") {
        options.io_timeout = parse_secs(e, "io_timeout_secs", &v)?;
    }
    if let Some(v) = map.remove("retry_max_times") {
        options.retry.max_times = parse_count(e, "retry_max_times", &v, 0)?;
    }
    if let Some(v) = map.remove("concurrency_limit") {
        options.concurrency_limit = Some(parse_count(e, "concurrency_limit", &v, 1)?);
    }
    if let Some(v) = map.remove("batch_delete") {
        options.batch_delete = match v.as_str() {
            "true" => true,
            "false" => false,
            _ => return Err(e.err(format!("batch_delete={v:?}: expected true or false"))),
        };
    }
    Ok(options)
}

fn build(display: &str, op: opendal::Result<Operator>) -> Result<Operator> {
    op.map_err(|source| StoreError::backend(StoreOp::Open, display, source))
}

/// Parses a store URI into an operator and options. See the module docs for the forms.
pub(crate) fn parse(uri: &str) -> Result<ParsedUri> {
    let display = redact(uri);
    let e = UriError { display: &display };
    let Some((scheme, rest)) = uri.split_once("://") else {
        return Err(e.err("missing \"scheme://\""));
    };
    let (body, query) = rest.split_once('?').unwrap_or((rest, ""));
    let mut map = parse_query(&e, query)?;
    let options = take_store_options(&e, &mut map)?;
    let named_temp_dir = match scheme {
        "fs" => map.get("atomic_write_dir").map(std::path::PathBuf::from),
        _ => None,
    };
    let op = match scheme {
        "fs" => open_fs(&e, body, map)?,
        "memory" => {
            if !body.is_empty() {
                return Err(e.err("memory:// takes no path"));
            }
            reject_options(&e, "memory", &map, &[])?;
            build(
                &display,
                Operator::new(opendal::services::Memory::default()),
            )?
        }
        "s3" => open_cloud_s3(&e, body, map)?,
        "gcs" => open_cloud_gcs(&e, body, map)?,
        "azblob" => open_cloud_azblob(&e, body, map)?,
        other => return Err(e.err(format!("unknown scheme {other:?}"))),
    };
    // OpenDAL created the directory and works on its canonical form.
    let fs_temp_dir = named_temp_dir.map(|dir| dir.canonicalize().unwrap_or(dir));
    Ok(ParsedUri {
        op,
        options,
        display,
        fs_temp_dir,
    })
}

fn reject_options(
    e: &UriError<'_>,
    scheme: &str,
    map: &BTreeMap<String, String>,
    known: &[&str],
) -> Result<()> {
    match map.keys().find(|k| !known.contains(&k.as_str())) {
        None => Ok(()),
        Some(key) => {
            let mut accepted: Vec<&str> = known.to_vec();
            accepted.extend(STORE_KEYS);
            Err(e.err(format!(
                "unknown option {key:?} for {scheme}:// (known: {})",
                accepted.join(", ")
            )))
        }
    }
}

fn open_fs(e: &UriError<'_>, body: &str, map: BTreeMap<String, String>) -> Result<Operator> {
    reject_options(e, "fs", &map, &["atomic_write_dir"])?;
    let root = percent_decode(body).ok_or_else(|| e.err("path has a bad %-escape"))?;
    if root.is_empty() {
        return Err(e.err("fs:// needs a directory: fs:///abs/path or fs://relative/path"));
    }
    if root.chars().any(char::is_control) {
        return Err(e.err("fs path contains a control character"));
    }
    let tmp = match map.get("atomic_write_dir") {
        Some(dir) if dir.is_empty() => return Err(e.err("atomic_write_dir is empty")),
        Some(dir) => dir.clone(),
        None => format!("{}/{FS_TMP_DIR}", root.trim_end_matches('/')),
    };
    let config = opendal::services::FsConfig::from_iter([
        ("root".to_owned(), root),
        ("atomic_write_dir".to_owned(), tmp),
    ])
    .map_err(|err| e.err(format!("fs options: {err}")))?;
    // Confined to the root: no link is ever followed (see crate::confine).
    build(
        e.display,
        crate::confine::confined_fs(opendal::Configurator::into_builder(config)),
    )
}

/// Splits `bucket[/root]`.
#[cfg_attr(
    not(any(feature = "s3", feature = "gcs", feature = "azblob")),
    allow(dead_code)
)]
fn bucket_and_root<'a>(
    e: &UriError<'_>,
    what: &str,
    body: &'a str,
) -> Result<(&'a str, Option<&'a str>)> {
    let (bucket, root) = match body.split_once('/') {
        Some((bucket, root)) => (
            bucket,
            Some(root).filter(|r| !r.trim_matches('/').is_empty()),
        ),
        None => (body, None),
    };
    if bucket.is_empty() {
        return Err(e.err(format!("missing {what} name")));
    }
    if bucket.chars().any(|c| c.is_control() || c == '%') {
        return Err(e.err(format!("{what} name {bucket:?} has a forbidden character")));
    }
    Ok((bucket, root))
}

/// Builds a cloud config from the URI: checks option names against the config's own fields,
/// then lets OpenDAL deserialize it.
#[cfg_attr(
    not(any(feature = "s3", feature = "gcs", feature = "azblob")),
    allow(dead_code)
)]
fn cloud_config<C: Configurator + Default + serde::Serialize>(
    e: &UriError<'_>,
    scheme: &str,
    name_key: &str,
    body: &str,
    mut map: BTreeMap<String, String>,
) -> Result<C> {
    let known = config_keys::<C>();
    let known: Vec<&str> = known
        .iter()
        .map(String::as_str)
        .filter(|k| *k != name_key && *k != "root")
        .collect();
    reject_options(e, scheme, &map, &known)?;
    let (bucket, root) = bucket_and_root(e, name_key, body)?;
    map.insert(name_key.to_owned(), bucket.to_owned());
    if let Some(root) = root {
        let root = percent_decode(root).ok_or_else(|| e.err("root has a bad %-escape"))?;
        map.insert("root".to_owned(), format!("/{}", root.trim_matches('/')));
    }
    C::from_iter(map).map_err(|err| e.err(format!("{scheme} options: {err}")))
}

#[cfg_attr(
    not(any(feature = "s3", feature = "gcs", feature = "azblob")),
    allow(dead_code)
)]
fn config_keys<C: Default + serde::Serialize>() -> Vec<String> {
    match serde_json::to_value(C::default()) {
        Ok(serde_json::Value::Object(fields)) => fields.keys().cloned().collect(),
        _ => Vec::new(),
    }
}

#[cfg(feature = "s3")]
fn open_cloud_s3(e: &UriError<'_>, body: &str, map: BTreeMap<String, String>) -> Result<Operator> {
    opendal::install_default();
    let config: opendal::services::S3Config = cloud_config(e, "s3", "bucket", body, map)?;
    build(e.display, Operator::from_config(config))
}

#[cfg(not(feature = "s3"))]
fn open_cloud_s3(e: &UriError<'_>, _: &str, _: BTreeMap<String, String>) -> Result<Operator> {
    Err(e.err("the s3 backend is not compiled in (enable cargo feature `s3` of chunk-store)"))
}

#[cfg(feature = "gcs")]
fn open_cloud_gcs(e: &UriError<'_>, body: &str, map: BTreeMap<String, String>) -> Result<Operator> {
    opendal::install_default();
    let config: opendal::services::GcsConfig = cloud_config(e, "gcs", "bucket", body, map)?;
    build(e.display, Operator::from_config(config))
}

#[cfg(not(feature = "gcs"))]
fn open_cloud_gcs(e: &UriError<'_>, _: &str, _: BTreeMap<String, String>) -> Result<Operator> {
    Err(e.err("the gcs backend is not compiled in (enable cargo feature `gcs` of chunk-store)"))
}

#[cfg(feature = "azblob")]
fn open_cloud_azblob(
    e: &UriError<'_>,
    body: &str,
    map: BTreeMap<String, String>,
) -> Result<Operator> {
    opendal::install_default();
    let config: opendal::services::AzblobConfig =
        cloud_config(e, "azblob", "container", body, map)?;
    build(e.display, Operator::from_config(config))
}

#[cfg(not(feature = "azblob"))]
fn open_cloud_azblob(e: &UriError<'_>, _: &str, _: BTreeMap<String, String>) -> Result<Operator> {
    Err(e.err(
        "the azblob backend is not compiled in (enable cargo feature `azblob` of chunk-store)",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(uri: &str) -> String {
        match parse(uri) {
            Err(StoreError::BadUri { reason, .. }) => reason,
            Err(other) => panic!("{uri}: expected BadUri, got {other}"),
            Ok(_) => panic!("{uri}: expected an error"),
        }
    }

    #[test]
    fn bad_uris_say_what_is_accepted() {
        for (uri, needle) in [
            ("", "missing \"scheme://\""),
            ("/tmp/x", "missing \"scheme://\""),
            ("ftp://host/x", "unknown scheme \"ftp\""),
            ("fs://", "fs:// needs a directory"),
            ("memory://x", "takes no path"),
            ("memory://?root=/x", "unknown option \"root\""),
            ("fs:///tmp/x?bogus=1", "unknown option \"bogus\""),
            ("fs:///tmp/x?create_only=maybe", "expected native or stat"),
            ("fs:///tmp/x?batch_delete=no", "expected true or false"),
            ("fs:///tmp/x?timeout_secs=0", "must be in (0, 86400]"),
            ("fs:///tmp/x?timeout_secs=abc", "not a number"),
            ("fs:///tmp/x?concurrency_limit=0", "from 1 to"),
            ("fs:///tmp/x?retry_max_times=-1", "from 0 to"),
            ("fs:///tmp/x?a=1&a=2", "given twice"),
            ("fs:///tmp/%zz", "bad %-escape"),
        ] {
            let got = reason(uri);
            assert!(got.contains(needle), "{uri}: {got}");
        }
        let err = parse("ftp://x")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        for form in [
            "fs:///abs/path",
            "fs://relative/path",
            "memory://",
            "s3://bucket",
        ] {
            assert!(err.contains(form), "{err}");
        }
    }

    #[cfg(feature = "s3")]
    #[test]
    fn s3_options_follow_opendal_names() {
        let got = reason("s3://b?endpoint=http://127.0.0.1:1&regoin=x");
        assert!(got.contains("unknown option \"regoin\""), "{got}");
        assert!(got.contains("region"), "the known list names region: {got}");
        assert!(reason("s3://?region=x").contains("missing bucket name"));
        let parsed = parse(
            "s3://bucket/some/root?endpoint=http://127.0.0.1:1&region=garage&create_only=stat\
             &secret_access_key=hunter2&access_key_id=AK",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(parsed.options.create_only, CreateOnlyMode::StatThenWrite);
        assert!(!parsed.display.contains("hunter2"), "{}", parsed.display);
        assert_eq!(parsed.op.info().scheme(), "s3");
        assert_eq!(parsed.op.info().name(), "bucket");
        assert_eq!(parsed.op.info().root(), "/some/root/");
    }

    #[cfg(feature = "gcs")]
    #[test]
    fn gcs_emulator_uris_open_without_credentials() {
        let parsed = parse(
            "gcs://bucket/it-x?endpoint=http://127.0.0.1:4443&skip_signature=true\
             &create_only=stat&batch_delete=false",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(parsed.op.info().scheme(), "gcs");
        assert_eq!(parsed.op.info().name(), "bucket");
        assert_eq!(parsed.op.info().root(), "/it-x/");
        assert_eq!(parsed.options.create_only, CreateOnlyMode::StatThenWrite);
        assert!(!parsed.options.batch_delete);
        let got = reason("gcs://bucket?skip_signatures=true");
        assert!(
            got.contains("skip_signature"),
            "the known list names it: {got}"
        );
    }

    #[cfg(feature = "azblob")]
    #[test]
    fn azurite_uris_keep_the_key_and_hide_it() {
        let key = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
        let uri = format!(
            "azblob://container/r?endpoint=http://127.0.0.1:10000/devstoreaccount1\
             &account_name=devstoreaccount1&account_key={key}"
        );
        let parsed = parse(&uri).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(parsed.op.info().scheme(), "azblob");
        assert_eq!(parsed.op.info().name(), "container");
        assert!(parsed.options.batch_delete, "on by default");
        assert!(!parsed.display.contains(key), "{}", parsed.display);
    }

    #[test]
    fn batch_delete_is_a_store_option() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let uri = format!("fs://{}?batch_delete=false", dir.path().display());
        let parsed = parse(&uri).unwrap_or_else(|e| panic!("{e}"));
        assert!(!parsed.options.batch_delete);
        let uri = format!("fs://{}?batch_delete=true", dir.path().display());
        assert!(
            parse(&uri)
                .unwrap_or_else(|e| panic!("{e}"))
                .options
                .batch_delete
        );
    }

    #[cfg(not(feature = "gcs"))]
    #[test]
    fn missing_features_are_named() {
        assert!(reason("gcs://bucket").contains("feature `gcs`"));
    }

    #[test]
    fn fs_and_memory_open() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let root = dir.path().join("bucket");
        let uri = format!("fs://{}?timeout_secs=5&concurrency_limit=4", root.display());
        let parsed = parse(&uri).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(parsed.op.info().scheme(), "fs");
        assert_eq!(parsed.options.timeout, Duration::from_secs(5));
        assert_eq!(parsed.options.concurrency_limit, Some(4));
        assert!(root.join(FS_TMP_DIR).is_dir(), "the temp dir is created");
        let parsed = parse("memory://").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(parsed.op.info().scheme(), "memory");
        assert_eq!(parsed.options.create_only, CreateOnlyMode::Native);
    }

    #[test]
    fn redaction_hides_secrets_only() {
        assert_eq!(
            redact("s3://b?region=r&secret_access_key=s3cr3t&session_token=t"),
            "s3://b?region=r&secret_access_key=***&session_token=***"
        );
        assert_eq!(redact("fs:///x"), "fs:///x");
    }

    #[test]
    fn percent_decoding_is_total() {
        assert_eq!(percent_decode("a%2Bb+c").as_deref(), Some("a+b+c"));
        assert_eq!(percent_decode("%"), None);
        assert_eq!(percent_decode("%4"), None);
        assert_eq!(percent_decode("%ff"), None, "not UTF-8");
    }
}
