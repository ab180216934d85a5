//! Object names: the one codec every other crate uses to tell audio objects from foreign ones.
//!
//! Grammar (design.md §3.1, compat doc §1.3):
//!
//! ```text
//! name   := TS "." single | TS "." batch | TS "-" TS "." batch | TS "-" TS ".pack"
//! single := "bin" | "enc" | "opus" | "opus.enc"
//! batch  := "batch.bin" | "batch.enc"
//! TS     := see `Timestamp` (exactly three decimals)
//! ```
//!
//! Extensions match longest first (`.batch.enc` before `.enc`, `.opus.enc` before `.enc`).
//! Every string either parses to an [`ObjectName`] that formats back to exactly the same string,
//! or gives a [`NameError`] saying why it is not an audio object name.

use std::fmt;
use std::str::FromStr;

use crate::timestamp::{Timestamp, TimestampError};

/// The kind of an audio object, as its extension says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ObjectKind {
    /// `TS.bin`: one raw PCM16LE chunk.
    Bin,
    /// `TS.enc`: Omi frames (normally one) whose plaintext is raw PCM.
    Enc,
    /// `TS.opus`: an Omi Opus container.
    Opus,
    /// `TS.opus.enc`: one Omi frame whose plaintext is an Omi Opus container.
    OpusEnc,
    /// `TS.batch.bin` / `FIRST-LAST.batch.bin`: raw PCM chunks concatenated.
    BatchBin,
    /// `TS.batch.enc` / `FIRST-LAST.batch.enc`: one Omi frame per chunk.
    BatchEnc,
    /// `START-END.pack`: chunkvault's native pack container.
    Pack,
}

impl ObjectKind {
    /// Every kind, in the order extensions are matched (longest first).
    pub const MATCH_ORDER: [ObjectKind; 7] = [
        ObjectKind::BatchEnc,
        ObjectKind::BatchBin,
        ObjectKind::OpusEnc,
        ObjectKind::Opus,
        ObjectKind::Enc,
        ObjectKind::Bin,
        ObjectKind::Pack,
    ];

    /// The extension without its leading dot, e.g. `"batch.enc"`.
    pub const fn extension(self) -> &'static str {
        match self {
            ObjectKind::Bin => "bin",
            ObjectKind::Enc => "enc",
            ObjectKind::Opus => "opus",
            ObjectKind::OpusEnc => "opus.enc",
            ObjectKind::BatchBin => "batch.bin",
            ObjectKind::BatchEnc => "batch.enc",
            ObjectKind::Pack => "pack",
        }
    }

    /// Whether the object may hold several chunks (Omi batches and packs).
    pub const fn is_batch(self) -> bool {
        matches!(
            self,
            ObjectKind::BatchBin | ObjectKind::BatchEnc | ObjectKind::Pack
        )
    }

    /// Whether the payload is Omi frames sealed with the user's key (`.enc`, `.opus.enc`,
    /// `.batch.enc`). Packs record their encryption in their header, so this is `false` for
    /// [`ObjectKind::Pack`].
    pub const fn is_encrypted(self) -> bool {
        matches!(
            self,
            ObjectKind::Enc | ObjectKind::OpusEnc | ObjectKind::BatchEnc
        )
    }

    /// Whether the payload (after decryption) is an Omi Opus container.
    pub const fn is_opus(self) -> bool {
        matches!(self, ObjectKind::Opus | ObjectKind::OpusEnc)
    }

    /// Whether this is one of Omi's six kinds (everything but [`ObjectKind::Pack`]).
    pub const fn is_omi(self) -> bool {
        !matches!(self, ObjectKind::Pack)
    }

    /// Whether names of this kind may (batches) or must (packs) use the `START-END` range form.
    const fn range_form(self) -> RangeForm {
        match self {
            ObjectKind::BatchBin | ObjectKind::BatchEnc => RangeForm::Optional,
            ObjectKind::Pack => RangeForm::Required,
            _ => RangeForm::Forbidden,
        }
    }
}

impl fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.extension())
    }
}

impl serde::Serialize for ObjectKind {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.extension())
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum RangeForm {
    Forbidden,
    Optional,
    Required,
}

/// Why a string is not an audio object name. Anything that gives this error is *foreign*:
/// listed separately, never treated as audio.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum NameError {
    /// The name was empty.
    #[error("empty object name")]
    Empty,
    /// The name is longer than [`ObjectName::MAX_LEN`] bytes.
    #[error("object name of {len} bytes is longer than {max}")]
    TooLong {
        /// Length of the name in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The name does not end in one of the seven audio extensions.
    #[error(
        "{name:?} does not end in an audio extension (.bin .enc .opus .opus.enc .batch.bin .batch.enc .pack)"
    )]
    UnknownExtension {
        /// The name.
        name: String,
    },
    /// A timestamp in the name is malformed.
    #[error("{name:?}: {source}")]
    Timestamp {
        /// The name.
        name: String,
        /// What was wrong with the timestamp.
        source: TimestampError,
    },
    /// A `START-END` range was used with a single-chunk kind (`.bin`, `.enc`, `.opus`, `.opus.enc`).
    #[error("{name:?}: .{kind} objects hold one chunk and take no range")]
    RangeNotAllowed {
        /// The name.
        name: String,
        /// The kind its extension says.
        kind: ObjectKind,
    },
    /// A `.pack` name without its `START-END` range.
    #[error("{name:?}: .pack names need a START-END range")]
    RangeRequired {
        /// The name.
        name: String,
    },
    /// The range ends before it starts (or, for a pack, does not end after it starts).
    #[error("{name:?}: range end is before its start")]
    EndBeforeStart {
        /// The name.
        name: String,
    },
}

/// A parsed audio object name: kind, start and (for range forms) end.
///
/// `end` means, by kind: for a batch, the *start* of its last chunk (inclusive, Omi's rule);
/// for a pack, the end of its audio (exclusive). [`ObjectName::covers`] hides the difference.
///
/// ```
/// use chunk_format::{ObjectKind, ObjectName};
///
/// let name: ObjectName = "1786961845.727-1786961900.727.batch.enc".parse()?;
/// assert_eq!(name.kind(), ObjectKind::BatchEnc);
/// assert!(name.is_batch() && name.is_encrypted());
/// assert!(name.covers("1786961850.727".parse()?));
/// assert_eq!(name.to_string(), "1786961845.727-1786961900.727.batch.enc");
///
/// assert!("1000.000.meta.json".parse::<ObjectName>().is_err()); // foreign
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ObjectName {
    kind: ObjectKind,
    start: Timestamp,
    range_end: Option<Timestamp>,
}

impl ObjectName {
    /// The longest name accepted, in bytes. The longest valid name is 41 bytes
    /// (`TS-TS.batch.enc` with 13-digit seconds); anything longer is rejected before parsing.
    pub const MAX_LEN: usize = 64;

    /// Names a single-chunk object (`.bin`, `.enc`, `.opus`, `.opus.enc`).
    ///
    /// Fails with [`NameError::RangeRequired`] for packs and gives the one-chunk batch form for
    /// batch kinds (`TS.batch.bin`).
    pub fn single(start: Timestamp, kind: ObjectKind) -> Result<ObjectName, NameError> {
        Self::build(kind, start, None)
    }

    /// Names an Omi batch exactly as Omi does: `FIRST.batch.*` for a batch of one chunk,
    /// `FIRST-LAST.batch.*` for more than one, even when `first == last` (compat doc §9.1).
    ///
    /// `last` is the start of the last chunk. Fails if `last < first`.
    pub fn batch(
        first: Timestamp,
        last: Timestamp,
        chunk_count: usize,
        encrypted: bool,
    ) -> Result<ObjectName, NameError> {
        let kind = if encrypted {
            ObjectKind::BatchEnc
        } else {
            ObjectKind::BatchBin
        };
        let range_end = (chunk_count > 1).then_some(last);
        Self::build(kind, first, range_end)
    }

    /// Names a pack covering `[start, end)`. Fails unless `end > start`.
    pub fn pack(start: Timestamp, end: Timestamp) -> Result<ObjectName, NameError> {
        Self::build(ObjectKind::Pack, start, Some(end))
    }

    fn build(
        kind: ObjectKind,
        start: Timestamp,
        range_end: Option<Timestamp>,
    ) -> Result<ObjectName, NameError> {
        let name = ObjectName {
            kind,
            start,
            range_end,
        };
        match (kind.range_form(), range_end) {
            (RangeForm::Forbidden, Some(_)) => Err(NameError::RangeNotAllowed {
                name: name.to_string(),
                kind,
            }),
            (RangeForm::Required, None) => Err(NameError::RangeRequired {
                name: name.to_string(),
            }),
            (RangeForm::Required, Some(end)) if end <= start => Err(NameError::EndBeforeStart {
                name: name.to_string(),
            }),
            (_, Some(end)) if end < start => Err(NameError::EndBeforeStart {
                name: name.to_string(),
            }),
            _ => Ok(name),
        }
    }

    /// The kind its extension says.
    pub fn kind(&self) -> ObjectKind {
        self.kind
    }

    /// The start: the chunk's timestamp, a batch's first chunk start, or a pack's start.
    pub fn start(&self) -> Timestamp {
        self.start
    }

    /// The end the name records: a batch's last chunk *start* (inclusive), a pack's audio end
    /// (exclusive), or the start itself for single-chunk names and one-chunk batches.
    pub fn end(&self) -> Timestamp {
        self.range_end.unwrap_or(self.start)
    }

    /// The `END` of a `START-END` name, if the name has the range form.
    pub fn range_end(&self) -> Option<Timestamp> {
        self.range_end
    }

    /// Whether the object may hold several chunks (see [`ObjectKind::is_batch`]).
    pub fn is_batch(&self) -> bool {
        self.kind.is_batch()
    }

    /// Whether the name says Omi frames sealed with the user's key (see
    /// [`ObjectKind::is_encrypted`]).
    pub fn is_encrypted(&self) -> bool {
        self.kind.is_encrypted()
    }

    /// Whether a chunk starting at `ts` belongs to this object by its name alone:
    /// single names match their timestamp exactly, batches match `first <= ts <= last`, packs
    /// match `start <= ts < end`.
    pub fn covers(&self, ts: Timestamp) -> bool {
        match self.kind {
            ObjectKind::Pack => self.start <= ts && ts < self.end(),
            _ => self.start <= ts && ts <= self.end(),
        }
    }
}

impl fmt::Display for ObjectName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.range_end {
            Some(end) => write!(f, "{}-{}.{}", self.start, end, self.kind.extension()),
            None => write!(f, "{}.{}", self.start, self.kind.extension()),
        }
    }
}

impl fmt::Debug for ObjectName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ObjectName({self})")
    }
}

impl FromStr for ObjectName {
    type Err = NameError;

    fn from_str(name: &str) -> Result<ObjectName, NameError> {
        if name.is_empty() {
            return Err(NameError::Empty);
        }
        if name.len() > Self::MAX_LEN {
            return Err(NameError::TooLong {
                len: name.len(),
                max: Self::MAX_LEN,
            });
        }
        let (kind, stem) = ObjectKind::MATCH_ORDER
            .iter()
            .find_map(|&kind| {
                let stem = name.strip_suffix(kind.extension())?.strip_suffix('.')?;
                Some((kind, stem))
            })
            .ok_or_else(|| NameError::UnknownExtension {
                name: name.to_owned(),
            })?;
        let timestamp = |text: &str| {
            text.parse::<Timestamp>()
                .map_err(|source| NameError::Timestamp {
                    name: name.to_owned(),
                    source,
                })
        };
        let (start, range_end) = match stem.split_once('-') {
            Some((start, end)) => (timestamp(start)?, Some(timestamp(end)?)),
            None => (timestamp(stem)?, None),
        };
        let parsed = Self::build(kind, start, range_end)?;
        debug_assert_eq!(parsed.to_string(), name);
        Ok(parsed)
    }
}

impl serde::Serialize for ObjectName {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for ObjectName {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn every_kind_parses_and_round_trips() {
        for (text, kind, start, end) in [
            ("1.000.bin", ObjectKind::Bin, "1.000", "1.000"),
            ("1.000.enc", ObjectKind::Enc, "1.000", "1.000"),
            ("1.000.opus", ObjectKind::Opus, "1.000", "1.000"),
            ("1.000.opus.enc", ObjectKind::OpusEnc, "1.000", "1.000"),
            ("1.000.batch.bin", ObjectKind::BatchBin, "1.000", "1.000"),
            ("1.000.batch.enc", ObjectKind::BatchEnc, "1.000", "1.000"),
            (
                "1.000-2.000.batch.bin",
                ObjectKind::BatchBin,
                "1.000",
                "2.000",
            ),
            (
                "1.000-1.000.batch.enc",
                ObjectKind::BatchEnc,
                "1.000",
                "1.000",
            ),
            ("1.000-6.000.pack", ObjectKind::Pack, "1.000", "6.000"),
        ] {
            let name: ObjectName = text.parse().unwrap();
            assert_eq!(name.kind(), kind, "{text}");
            assert_eq!(name.start(), ts(start), "{text}");
            assert_eq!(name.end(), ts(end), "{text}");
            assert_eq!(name.to_string(), text);
        }
    }

    #[test]
    fn omi_batch_naming_rule() {
        let t = ts("1786961845.727");
        assert_eq!(
            ObjectName::batch(t, t, 1, false).unwrap().to_string(),
            "1786961845.727.batch.bin"
        );
        assert_eq!(
            ObjectName::batch(t, t, 2, true).unwrap().to_string(),
            "1786961845.727-1786961845.727.batch.enc"
        );
        assert!(ObjectName::batch(ts("2.000"), ts("1.000"), 2, false).is_err());
    }

    #[test]
    fn covers_by_kind() {
        let batch: ObjectName = "10.000-20.000.batch.bin".parse().unwrap();
        assert!(batch.covers(ts("10.000")) && batch.covers(ts("20.000")));
        assert!(!batch.covers(ts("20.001")) && !batch.covers(ts("9.999")));
        let pack: ObjectName = "10.000-20.000.pack".parse().unwrap();
        assert!(pack.covers(ts("19.999")) && !pack.covers(ts("20.000")));
        let single: ObjectName = "10.000.opus".parse().unwrap();
        assert!(single.covers(ts("10.000")) && !single.covers(ts("10.001")));
    }

    #[test]
    fn foreign_names_are_errors() {
        for bad in [
            "",
            "1000.000.meta.json",
            "notes.txt",
            "abc.bin",
            "a-b.bin",
            "1.5.bin",
            "2.000-1.000.batch.bin",
            "1.000-2.000.bin",
            "1.000-2.000.opus.enc",
            "1.000.pack",
            "1.000-1.000.pack",
            "1.000.BIN",
            "1.000.bin.bak",
            ".bin",
            "-1.000.bin",
            "1.000-.batch.bin",
            "1.000-2.000-3.000.batch.bin",
            "１.000.bin",
            "1.000 .bin",
            "1.000..bin",
        ] {
            assert!(
                bad.parse::<ObjectName>().is_err(),
                "{bad:?} should be foreign"
            );
        }
        let long = format!("{}.bin", "1".repeat(100));
        assert!(matches!(
            long.parse::<ObjectName>(),
            Err(NameError::TooLong { .. })
        ));
    }
}
