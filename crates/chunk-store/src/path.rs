//! Checks on object paths and prefixes before they reach a backend.
//!
//! A path is a plain relative key: segments separated by `/`, none empty, none `.` or `..`, no
//! control characters, at most [`MAX_PATH_LEN`] bytes. On the fs backend a `..` segment would
//! leave the root directory, so these checks are a safety boundary, not a style rule.

use crate::error::{Result, StoreError};

/// The longest object path accepted, in bytes (S3's key limit).
pub const MAX_PATH_LEN: usize = 1024;

/// The directory, relative to an fs root, that holds in-progress writes. Paths under it are
/// reserved.
pub const FS_TMP_DIR: &str = ".chunkvault-tmp";

fn bad(path: &str, reason: &'static str) -> StoreError {
    StoreError::BadPath {
        path: path.to_owned(),
        reason,
    }
}

fn check_segments(path: &str, body: &str) -> Result<()> {
    if path.len() > MAX_PATH_LEN {
        return Err(bad(path, "longer than 1024 bytes"));
    }
    if path.starts_with('/') {
        return Err(bad(path, "starts with '/'"));
    }
    if path.chars().any(char::is_control) {
        return Err(bad(path, "contains a control character"));
    }
    for segment in body.split('/') {
        match segment {
            "" => return Err(bad(path, "has an empty segment")),
            "." | ".." => return Err(bad(path, "has a '.' or '..' segment")),
            _ => {}
        }
    }
    if body.split('/').next() == Some(FS_TMP_DIR) {
        return Err(bad(
            path,
            "is under the reserved .chunkvault-tmp/ directory",
        ));
    }
    Ok(())
}

/// Checks an object path: non-empty, no trailing `/`, plain segments.
pub(crate) fn check_object_path(path: &str) -> Result<()> {
    if path.is_empty() {
        return Err(bad(path, "is empty"));
    }
    if path.ends_with('/') {
        return Err(bad(path, "ends with '/' (that is a prefix, not an object)"));
    }
    check_segments(path, path)
}

/// Checks a prefix: ends with `/` and has plain segments; the empty prefix (the whole bucket)
/// only when `allow_root`.
pub(crate) fn check_prefix(prefix: &str, allow_root: bool) -> Result<()> {
    if prefix.is_empty() {
        return if allow_root {
            Ok(())
        } else {
            Err(bad(prefix, "is empty (the whole bucket)"))
        };
    }
    let Some(body) = prefix.strip_suffix('/') else {
        return Err(bad(
            prefix,
            "does not end with '/' (it would match siblings that share its characters)",
        ));
    };
    check_segments(prefix, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_paths() {
        for ok in ["a", "chunks/u/c/1.000.bin", "x.y/z", "a b/c"] {
            assert!(check_object_path(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "/abs",
            "a/",
            "a//b",
            "a/../b",
            "..",
            "./a",
            "a/\0",
            "a\nb",
            ".chunkvault-tmp/x",
        ] {
            assert!(
                matches!(check_object_path(bad), Err(StoreError::BadPath { .. })),
                "{bad:?}"
            );
        }
        assert!(check_object_path(&"a".repeat(MAX_PATH_LEN + 1)).is_err());
    }

    #[test]
    fn prefixes() {
        assert!(check_prefix("", true).is_ok());
        assert!(check_prefix("", false).is_err());
        assert!(check_prefix("chunks/u1/", false).is_ok());
        for bad in [
            "chunks/u1",
            "/chunks/",
            "chunks//",
            "../",
            "a/./",
            ".chunkvault-tmp/",
        ] {
            assert!(check_prefix(bad, true).is_err(), "{bad:?}");
        }
    }
}
