//! Bucket layout: validated ids and the per-user, per-conversation prefixes.
//!
//! ```text
//! chunks/{uid}/{conversation_id}/{name}     audio objects (Omi names and packs side by side)
//! audio/{uid}/{conversation_id}/...         other per-conversation data (Omi: speaker embeddings)
//! merged/{uid}/{conversation_id}/...        merged-audio caches
//! playback/{uid}/...  diagnostics/{uid}/... other per-user data (only purged here)
//! ```
//!
//! Ids are checked once, when a [`UserId`] or [`ConversationId`] is made: a bad id is an
//! [`IdError`], never a path. Every prefix ends with `/`, so `chunks/u1/` never matches
//! `chunks/u10/` and `conv-e` never matches `conv-e2`.
//!
//! ```
//! use chunk_store::layout::{self, ConversationId, UserId};
//!
//! let uid = UserId::new("oracle-uid")?;
//! let conv: ConversationId = "conv-e".parse()?;
//! assert_eq!(layout::chunks_prefix(&uid, &conv), "chunks/oracle-uid/conv-e/");
//! assert!(UserId::new("../etc").is_err());
//! # Ok::<(), chunk_store::layout::IdError>(())
//! ```

use std::fmt;
use std::str::FromStr;

use chunk_format::ObjectName;

/// The longest id accepted, in bytes.
pub const MAX_ID_LEN: usize = 128;

/// The top-level prefix of every audio object (`chunks/{uid}/{conv}/{name}`).
pub const CHUNKS_ROOT: &str = "chunks";

/// The top-level prefixes that hold per-user data, in the order a user purge visits them.
pub const USER_ROOTS: [&str; 5] = ["chunks", "audio", "merged", "playback", "diagnostics"];

/// Which kind of id an [`IdError`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdKind {
    /// A [`UserId`].
    User,
    /// A [`ConversationId`].
    Conversation,
}

impl fmt::Display for IdKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IdKind::User => "user id",
            IdKind::Conversation => "conversation id",
        })
    }
}

/// Why a string is not a valid id. The id is shown escaped (`{:?}`), so control characters in
/// it cannot reach a log line raw.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The id was empty.
    #[error("empty {kind}")]
    Empty {
        /// User or conversation.
        kind: IdKind,
    },
    /// The id is longer than [`MAX_ID_LEN`] bytes.
    #[error("{kind} of {len} bytes is longer than {max}")]
    TooLong {
        /// User or conversation.
        kind: IdKind,
        /// Its length in bytes.
        len: usize,
        /// The limit ([`MAX_ID_LEN`]).
        max: usize,
    },
    /// The id contains a path separator, a control character or NUL.
    #[error(
        "{kind} {id:?} contains {ch:?} at byte {at}: ids may not contain '/', '\\\\' or control characters"
    )]
    ForbiddenChar {
        /// User or conversation.
        kind: IdKind,
        /// The id as given.
        id: String,
        /// The first forbidden character.
        ch: char,
        /// Its byte offset.
        at: usize,
    },
    /// The id is not in Unicode Normalization Form C: it would be a look-alike of its NFC
    /// form (`e` + combining acute against `é`), a second user where a person sees one.
    #[error("{kind} {id:?} is not in Unicode NFC; give it as {nfc:?}")]
    NotNfc {
        /// User or conversation.
        kind: IdKind,
        /// The id as given.
        id: String,
        /// Its NFC form.
        nfc: String,
    },
    /// The id contains an invisible code point: a default-ignorable one (zero-width space,
    /// joiners, variation selectors, soft hyphen, …) or a bidirectional control, which make
    /// ids that look identical but are not (`alice` and `alice\u{200b}`).
    #[error("{kind} {id:?} contains the invisible code point U+{code:04X} at byte {at}")]
    Invisible {
        /// User or conversation.
        kind: IdKind,
        /// The id as given.
        id: String,
        /// The code point.
        code: u32,
        /// Its byte offset.
        at: usize,
    },
    /// The id is `.` or `..`, which name directories, not objects.
    #[error("{kind} {id:?} is a relative path component")]
    DotName {
        /// User or conversation.
        kind: IdKind,
        /// The id as given.
        id: String,
    },
}

fn validate(kind: IdKind, id: &str) -> Result<(), IdError> {
    if id.is_empty() {
        return Err(IdError::Empty { kind });
    }
    if id.len() > MAX_ID_LEN {
        return Err(IdError::TooLong {
            kind,
            len: id.len(),
            max: MAX_ID_LEN,
        });
    }
    if let Some((at, ch)) = id
        .char_indices()
        .find(|&(_, c)| c == '/' || c == '\\' || c.is_control())
    {
        return Err(IdError::ForbiddenChar {
            kind,
            id: id.to_owned(),
            ch,
            at,
        });
    }
    if id == "." || id == ".." {
        return Err(IdError::DotName {
            kind,
            id: id.to_owned(),
        });
    }
    if let Some((at, ch)) = id.char_indices().find(|&(_, c)| is_invisible(c)) {
        return Err(IdError::Invisible {
            kind,
            id: id.to_owned(),
            code: u32::from(ch),
            at,
        });
    }
    let nfc = icu_normalizer::ComposingNormalizerBorrowed::new_nfc();
    if !nfc.is_normalized(id) {
        return Err(IdError::NotNfc {
            kind,
            id: id.to_owned(),
            nfc: nfc.normalize(id).into_owned(),
        });
    }
    Ok(())
}

/// Whether `c` is Unicode `Default_Ignorable_Code_Point` or `Bidi_Control`: invisible in an id.
pub(crate) fn is_invisible(c: char) -> bool {
    use icu_properties::CodePointSetData;
    use icu_properties::props::{BidiControl, DefaultIgnorableCodePoint};
    CodePointSetData::new::<DefaultIgnorableCodePoint>().contains(c)
        || CodePointSetData::new::<BidiControl>().contains(c)
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $kind:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            /// Checks `id` and wraps it: non-empty, at most [`MAX_ID_LEN`] bytes, no `/`, no
            /// `\`, no control characters (NUL included), not `.` or `..`, in Unicode NFC, and
            /// without default-ignorable or bidi-control code points (zero-width characters,
            /// joiners, variation selectors, direction overrides). Ids are refused, never
            /// rewritten: a normalised id would name another path than the one stored. Ids in
            /// different scripts that look alike (Latin `a`, Cyrillic `а`) stay distinct.
            pub fn new(id: impl Into<String>) -> Result<Self, IdError> {
                let id = id.into();
                validate($kind, &id)?;
                Ok(Self(id))
            }

            /// The id as text; safe to use as one path segment.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = IdError;

            fn from_str(id: &str) -> Result<Self, IdError> {
                Self::new(id)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

id_type!(
    /// A validated user id: one path segment under every per-user prefix.
    UserId,
    IdKind::User
);
id_type!(
    /// A validated conversation id: one path segment under `chunks/{uid}/` and friends.
    ConversationId,
    IdKind::Conversation
);

/// Returns `chunks/{uid}/{conv}/`, the prefix of a conversation's audio objects.
pub fn chunks_prefix(uid: &UserId, conv: &ConversationId) -> String {
    format!("{CHUNKS_ROOT}/{uid}/{conv}/")
}

/// Returns `audio/{uid}/{conv}/`, the prefix of a conversation's other data.
pub fn audio_prefix(uid: &UserId, conv: &ConversationId) -> String {
    format!("audio/{uid}/{conv}/")
}

/// Returns `merged/{uid}/{conv}/`, the prefix of a conversation's merged-audio cache.
pub fn merged_prefix(uid: &UserId, conv: &ConversationId) -> String {
    format!("merged/{uid}/{conv}/")
}

/// Returns every per-user prefix (`chunks/{uid}/`, `audio/{uid}/`, `merged/{uid}/`,
/// `playback/{uid}/`, `diagnostics/{uid}/`), each ending in `/`: what a user purge deletes.
pub fn user_prefixes(uid: &UserId) -> Vec<String> {
    USER_ROOTS
        .iter()
        .map(|root| format!("{root}/{uid}/"))
        .collect()
}

/// Returns the full path of audio object `name` in a conversation.
pub fn chunk_path(uid: &UserId, conv: &ConversationId, name: &ObjectName) -> String {
    format!("{}{name}", chunks_prefix(uid, conv))
}

/// An audio object's place, parsed from its path `chunks/{uid}/{conv}/{name}`: the inverse of
/// [`chunk_path`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkPath {
    /// The user.
    pub uid: UserId,
    /// The conversation.
    pub conversation: ConversationId,
    /// The parsed object name.
    pub name: ObjectName,
}

/// Why a path is not an audio object's path ([`ChunkPath::parse`]); prints as one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkPathError {
    /// Not of the shape `chunks/{uid}/{conversation}/{name}`.
    #[error("not at chunks/{{uid}}/{{conversation}}/{{name}}")]
    Shape,
    /// The user or conversation segment is not a valid id.
    #[error(transparent)]
    Id(#[from] IdError),
    /// The last segment is not an audio object name.
    #[error("{0}")]
    Name(String),
}

impl ChunkPath {
    /// Parses `chunks/{uid}/{conversation}/{name}`: valid ids and an audio object name.
    pub fn parse(path: &str) -> Result<ChunkPath, ChunkPathError> {
        let rest = path
            .strip_prefix(CHUNKS_ROOT)
            .and_then(|rest| rest.strip_prefix('/'))
            .ok_or(ChunkPathError::Shape)?;
        let mut parts = rest.split('/');
        let (Some(uid), Some(conversation), Some(name), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(ChunkPathError::Shape);
        };
        Ok(ChunkPath {
            uid: UserId::new(uid)?,
            conversation: ConversationId::new(conversation)?,
            name: name
                .parse::<ObjectName>()
                .map_err(|e| ChunkPathError::Name(e.to_string()))?,
        })
    }

    /// The object's path ([`chunk_path`]).
    pub fn path(&self) -> String {
        chunk_path(&self.uid, &self.conversation, &self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_paths_parse_back() {
        let path = "chunks/u1/c1/1786961845.727-1786961900.727.batch.enc";
        let parsed = ChunkPath::parse(path).unwrap();
        assert_eq!(
            (parsed.uid.as_str(), parsed.conversation.as_str()),
            ("u1", "c1")
        );
        assert_eq!(parsed.path(), path);
        for bad in [
            "chunks/u1/c1/notes.txt",
            "chunks/u1/1786961845.727.bin",
            "chunks/u1/c1/x/1786961845.727.bin",
            "audio/u1/c1/1786961845.727.bin",
            "chunksx/u1/c1/1786961845.727.bin",
            "chunks/../c1/1786961845.727.bin",
        ] {
            assert!(ChunkPath::parse(bad).is_err(), "{bad}");
        }
    }
    use proptest::prelude::*;

    #[test]
    fn good_ids_are_accepted() {
        for id in [
            "oracle-uid",
            "conv-e",
            "a",
            "x.y",
            "...",
            "..a",
            "with space",
            "ünïcødé",
            "00000000-0000-4000-8000-000000000000",
        ] {
            assert_eq!(UserId::new(id).map(|u| u.to_string()), Ok(id.to_owned()));
            assert_eq!(
                id.parse::<ConversationId>().map(|c| c.to_string()),
                Ok(id.to_owned())
            );
        }
        let longest = "a".repeat(MAX_ID_LEN);
        assert!(UserId::new(longest).is_ok());
    }

    #[test]
    fn look_alike_ids_are_refused() {
        // NFD "é" (e + combining acute) is a look-alike of NFC "é".
        assert_eq!(
            UserId::new("caf\u{65}\u{301}"),
            Err(IdError::NotNfc {
                kind: IdKind::User,
                id: "caf\u{65}\u{301}".to_owned(),
                nfc: "caf\u{e9}".to_owned(),
            })
        );
        assert!(UserId::new("caf\u{e9}").is_ok());
        for (id, code, at) in [
            ("alice\u{200b}", 0x200b, 5),
            ("al\u{200d}ice", 0x200d, 2),
            ("\u{202e}ecila", 0x202e, 0),
            ("alice\u{2066}", 0x2066, 5),
            ("ali\u{ad}ce", 0xad, 3),
            ("alice\u{fe0f}", 0xfe0f, 5),
            ("\u{feff}alice", 0xfeff, 0),
        ] {
            assert_eq!(
                ConversationId::new(id),
                Err(IdError::Invisible {
                    kind: IdKind::Conversation,
                    id: id.to_owned(),
                    code,
                    at
                }),
                "{id:?}"
            );
        }
    }

    #[test]
    fn bad_ids_are_errors() {
        assert_eq!(UserId::new(""), Err(IdError::Empty { kind: IdKind::User }));
        assert_eq!(
            ConversationId::new("a".repeat(MAX_ID_LEN + 1)),
            Err(IdError::TooLong {
                kind: IdKind::Conversation,
                len: MAX_ID_LEN + 1,
                max: MAX_ID_LEN
            })
        );
        for (id, ch, at) in [
            ("a/b", '/', 1),
            ("/", '/', 0),
            ("a\\b", '\\', 1),
            ("nul\0", '\0', 3),
            ("tab\there", '\t', 3),
            ("nl\n", '\n', 2),
            ("del\u{7f}", '\u{7f}', 3),
            ("c1\u{85}", '\u{85}', 2),
            ("../x", '/', 2),
        ] {
            assert_eq!(
                UserId::new(id),
                Err(IdError::ForbiddenChar {
                    kind: IdKind::User,
                    id: id.to_owned(),
                    ch,
                    at
                }),
                "{id:?}"
            );
        }
        for id in [".", ".."] {
            assert!(matches!(
                ConversationId::new(id),
                Err(IdError::DotName { .. })
            ));
        }
    }

    #[test]
    fn errors_escape_the_id() {
        let err = UserId::new("evil\nline").unwrap_err().to_string();
        assert!(!err.contains('\n'), "{err}");
        assert!(err.contains("\\n"), "{err}");
    }

    #[test]
    fn prefixes_have_the_documented_shape() {
        let uid = UserId::new("u1").unwrap();
        let conv = ConversationId::new("c").unwrap();
        assert_eq!(chunks_prefix(&uid, &conv), "chunks/u1/c/");
        assert_eq!(audio_prefix(&uid, &conv), "audio/u1/c/");
        assert_eq!(merged_prefix(&uid, &conv), "merged/u1/c/");
        assert_eq!(
            user_prefixes(&uid),
            [
                "chunks/u1/",
                "audio/u1/",
                "merged/u1/",
                "playback/u1/",
                "diagnostics/u1/"
            ]
        );
        let name: ObjectName = "1786961845.727-1786961900.727.batch.enc".parse().unwrap();
        assert_eq!(
            chunk_path(&uid, &conv, &name),
            "chunks/u1/c/1786961845.727-1786961900.727.batch.enc"
        );
    }

    proptest! {
        /// Every accepted id is exactly one safe path segment: the prefix splits back into the
        /// same three segments, none of them `.` or `..`, and nothing is rejected that meets the
        /// documented rules.
        #[test]
        fn prop_ids_are_single_safe_segments(id in "\\PC{0,20}|[a-z./\\\\\u{0}-\u{1f}]{0,6}") {
            let nfc = icu_normalizer::ComposingNormalizerBorrowed::new_nfc();
            let expected_ok = !id.is_empty()
                && id.len() <= MAX_ID_LEN
                && !id.chars().any(|c| c == '/' || c == '\\' || c.is_control())
                && id != "."
                && id != ".."
                && !id.chars().any(is_invisible)
                && nfc.is_normalized(&id);
            match (UserId::new(id.clone()), ConversationId::new(id.clone())) {
                (Ok(uid), Ok(conv)) => {
                    prop_assert!(expected_ok);
                    let prefix = chunks_prefix(&uid, &conv);
                    let segments: Vec<&str> = prefix.trim_end_matches('/').split('/').collect();
                    prop_assert_eq!(segments, vec!["chunks", id.as_str(), id.as_str()]);
                }
                (Err(_), Err(_)) => prop_assert!(!expected_ok),
                _ => prop_assert!(false, "user and conversation ids disagree on {:?}", id),
            }
        }
    }
}
