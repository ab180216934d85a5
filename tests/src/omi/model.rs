//! Serde models of the Omi vector JSON files, with the field names of the vectors README.
//!
//! Every struct denies unknown fields and every closed set of strings is an enum, so a file whose
//! shape differs from what scenarios A–E contain fails to parse instead of being half-read.
//! Timestamps stay `f64` exactly as the JSON gives them (the crate enables serde_json's
//! correctly rounded float parser); their `%.3f` spellings are kept next to them as strings.

use serde::Deserialize;
use std::collections::BTreeMap;

/// A JSON shape that scenarios A–E never contain (`spans`, `record_fallback_calls` entries).
///
/// The type has no values, so any non-null / non-empty occurrence fails to parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Unobserved {}

/// Omi's data-protection level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Plaintext objects (`.opus`, `.bin`, `.batch.bin`).
    Standard,
    /// AES-256-GCM encrypted objects (`.opus.enc`, `.enc`, `.batch.enc`).
    Enhanced,
}

// ---------------------------------------------------------------------------------------------
// manifest.json

/// `manifest.json`: the Omi sources that were run, library versions and shared constants.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Omi source files that were run, keyed by their module path (e.g. `utils/encryption.py`).
    pub omi_sources: BTreeMap<String, OmiSource>,
    /// The libopus build used for encoding and decoding.
    pub libopus: Libopus,
    /// CPython version string.
    pub python: String,
    /// Version of the `cryptography` package.
    pub cryptography: String,
    /// Version of numpy.
    pub numpy: String,
    /// Platform string of the generating machine.
    pub platform: String,
    /// `ENCRYPTION_SECRET` (raw UTF-8 bytes are the HKDF input key material).
    pub encryption_secret: String,
    /// The user id every object belongs to (`oracle-uid`).
    pub uid: String,
    /// AES-256 key derived for `uid`, hex.
    pub key_for_uid_hex: String,
    /// Key derived for `test-uid` (the `omi-layout.md` §2.5 test vector), hex.
    #[serde(rename = "spec_test_vector_key_for_test-uid")]
    pub spec_test_vector_key_for_test_uid: String,
    /// Self-test values of the input-signal generator.
    pub pcm_generator_self_test: PcmGeneratorSelfTest,
    /// Default bucket name (not part of any object name).
    pub bucket_name_default: String,
}

/// One Omi source file that was run to make the vectors.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OmiSource {
    /// GitHub repository (`owner/name`).
    pub repo: String,
    /// Path inside the repository.
    pub path: String,
    /// Full commit hash.
    pub commit: String,
    /// Optional remark (e.g. that only an extract was run).
    pub note: Option<String>,
    /// Length in characters of the text that was run.
    pub chars: u64,
    /// SHA-256 of the text that was run, hex.
    pub sha256: String,
}

/// The libopus library used.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Libopus {
    /// Shared-library name.
    pub library: String,
    /// Version string reported by the library.
    pub version: String,
}

/// Self-test values of the chirp generator.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PcmGeneratorSelfTest {
    /// The first four samples starting at sample index 0.
    pub first4_samples_from_n0_0: Vec<i16>,
    /// SHA-256 of the first 160 000 bytes (chunk `c000`), hex.
    pub sha256_first_160000_bytes: String,
}

// ---------------------------------------------------------------------------------------------
// inputs/chunks.json

/// `inputs/chunks.json`: the input chunks of a scenario.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChunksFile {
    /// User id.
    pub uid: String,
    /// Sample rate of every chunk (16 000).
    pub sample_rate: u32,
    /// Description of the signal generator.
    pub generator: String,
    /// `ENCRYPTION_SECRET` used.
    pub encryption_secret: String,
    /// The chunks, in id order.
    pub chunks: Vec<InputChunk>,
}

/// One input chunk: `len` bytes of the chirp starting at sample `n0`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputChunk {
    /// Chunk id (`c000`, …), unique within the scenario.
    pub id: String,
    /// Conversation the chunk was uploaded to.
    pub conversation_id: String,
    /// Upload timestamp, exactly the f64 given to Omi.
    pub timestamp: f64,
    /// `timestamp` formatted with `%.3f`.
    pub ts3: String,
    /// First sample index of the chunk in the chirp.
    pub n0: u64,
    /// Length in bytes.
    pub len: u64,
    /// SHA-256 of the chunk bytes, hex.
    pub sha256: String,
    /// Optional remark.
    pub note: Option<String>,
    /// Original PCM file, relative to `inputs/` (not committed; the bytes are regenerated).
    pub file: String,
}

// ---------------------------------------------------------------------------------------------
// inputs/calls.json

/// One write call of `inputs/calls.json`, tagged by its `fn` field.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "fn", rename_all = "snake_case")]
pub enum Call {
    /// `upload_audio_chunk(uid, conversation_id, chunk, timestamp, level?)`.
    UploadAudioChunk(UploadCall),
    /// `upload_audio_chunks_batch(...)`: one streamed object.
    UploadAudioChunksBatch(BatchCall),
    /// An object placed directly by the fixture generator (not an Omi writer).
    HarnessPutObject(HarnessPut),
}

/// A single-chunk upload.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadCall {
    /// Conversation id.
    pub conversation_id: String,
    /// Input chunk id.
    pub chunk: String,
    /// Timestamp passed, exact f64.
    pub timestamp: f64,
    /// Level passed by the caller; `None` means not passed (read from the user DB stub).
    pub data_protection_level_arg: Option<Level>,
    /// Effective level.
    pub db_level: Level,
    /// Number of user-DB level reads the call made.
    pub db_reads: u32,
    /// Object path Omi returned.
    pub returned: String,
    /// Storage operations in order.
    pub ops: Vec<WriteOp>,
}

/// A batch upload.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchCall {
    /// Conversation id.
    pub conversation_id: String,
    /// Chunk ids in the order passed.
    pub chunks_in_call_order: Vec<String>,
    /// Timestamps in the order passed, exact f64.
    pub timestamps_in_call_order: Vec<f64>,
    /// v2 spans; always null in A–E.
    pub spans: Option<Unobserved>,
    /// Level passed by the caller; `None` means not passed.
    pub data_protection_level_arg: Option<Level>,
    /// Effective level.
    pub db_level: Level,
    /// Object paths Omi returned.
    pub returned: Vec<String>,
    /// Number of user-DB level reads the call made.
    pub db_reads: u32,
    /// Chunk ids after Omi's stable sort by timestamp.
    pub chunks_in_stored_order: Vec<String>,
    /// Storage operations in order.
    pub ops: Vec<WriteOp>,
}

/// An object the fixture generator placed directly.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HarnessPut {
    /// Object name.
    pub name: String,
    /// Why it was placed.
    pub note: String,
    /// Object size in bytes.
    pub len: u64,
    /// SHA-256 of the object, hex.
    pub sha256: String,
}

/// One storage operation of a write call (`[op, name]` or `["open_wb_commit", name, writes]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "Vec<serde_json::Value>")]
pub enum WriteOp {
    /// `["upload", name]`: one whole-object upload.
    Upload {
        /// Object name.
        name: String,
    },
    /// `["open_wb", name]`: a streamed write was opened.
    OpenWb {
        /// Object name.
        name: String,
    },
    /// `["open_wb_commit", name, n]`: the streamed write was committed after `write_calls` writes.
    OpenWbCommit {
        /// Object name.
        name: String,
        /// Number of `write()` calls made into the stream.
        write_calls: u64,
    },
}

/// Why a `[op, ...]` array is not a valid [`WriteOp`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid write op {value}: {reason}")]
pub struct WriteOpError {
    /// The offending JSON array, re-serialised.
    pub value: String,
    /// What was wrong.
    pub reason: &'static str,
}

impl TryFrom<Vec<serde_json::Value>> for WriteOp {
    type Error = WriteOpError;

    fn try_from(items: Vec<serde_json::Value>) -> Result<Self, Self::Error> {
        let fail = |reason| WriteOpError {
            value: serde_json::Value::Array(items.clone()).to_string(),
            reason,
        };
        let (Some(op), Some(name)) = (
            items.first().and_then(|v| v.as_str()),
            items.get(1).and_then(|v| v.as_str()),
        ) else {
            return Err(fail("expected [op: string, name: string, ...]"));
        };
        let name = name.to_owned();
        match (op, items.len()) {
            ("upload", 2) => Ok(Self::Upload { name }),
            ("open_wb", 2) => Ok(Self::OpenWb { name }),
            ("open_wb_commit", 3) => match items.get(2).and_then(serde_json::Value::as_u64) {
                Some(write_calls) => Ok(Self::OpenWbCommit { name, write_calls }),
                None => Err(fail("open_wb_commit needs an unsigned write count")),
            },
            ("upload" | "open_wb" | "open_wb_commit", _) => Err(fail("wrong number of elements")),
            _ => Err(fail("unknown op")),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// expected/list.json

/// `expected/list.json`: `list_audio_chunks` results keyed by conversation id.
pub type ListFile = BTreeMap<String, Vec<ListEntry>>;

/// One `list_audio_chunks` entry (order matters).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListEntry {
    /// Timestamp Omi parsed from the name (a range batch: its start), exact f64.
    pub timestamp: f64,
    /// Object name.
    pub path: String,
    /// Object size in bytes.
    pub size: u64,
    /// Whether the object is a `.batch.*` object.
    pub is_batch: bool,
}

// ---------------------------------------------------------------------------------------------
// expected/downloads.json

/// One `download_audio_chunks_and_merge` case.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DownloadCase {
    /// Case name (e.g. `i_all_listed_fill`).
    pub case: String,
    /// Conversation id.
    pub conversation_id: String,
    /// Timestamps to pass, exact f64, in request order.
    pub timestamps: Vec<f64>,
    /// The same timestamps formatted with `%.3f`.
    pub timestamps_ts3: Vec<String>,
    /// Whether holes are filled with silence.
    pub fill_gaps: bool,
    /// Sample rate passed (16 000).
    pub sample_rate: u32,
    /// What the case shows.
    pub note: String,
    /// What Omi returned.
    pub result: DownloadResult,
    /// Object names that were downloaded (informational).
    pub objects_downloaded: Vec<String>,
    /// 404s of the per-extension lookup (informational).
    pub probes_not_found: Vec<String>,
    /// Whether the result depends on the Opus decoder (compare loosely with another libopus).
    pub involves_opus_decode: bool,
    /// Storage operation counts (informational).
    pub op_counts: DownloadOpCounts,
    /// Record-fallback calls; always empty in A–E.
    pub record_fallback_calls: Vec<Unobserved>,
    /// Omi's WARNING lines.
    pub omi_log_messages: Vec<LogMessage>,
}

/// Storage operation counts of a download case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DownloadOpCounts {
    /// `list` calls.
    pub list: u32,
    /// Download attempts, including 404s.
    pub download: u32,
    /// Download attempts that were 404 (absent from the JSON when zero).
    #[serde(default)]
    pub download_404: u32,
}

/// One distinct Omi log message and how often it was logged.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogMessage {
    /// The message text.
    pub message: String,
    /// Number of times it was logged.
    pub count: u32,
}

/// What a download case returned.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "RawDownloadResult")]
pub enum DownloadResult {
    /// `{ok: true, ...}`: assembled PCM16LE audio.
    Audio {
        /// Length in bytes.
        len: u64,
        /// SHA-256 of the PCM, hex.
        sha256: String,
        /// `len` expressed in seconds at 16 kHz mono 16-bit.
        samples_equivalent_seconds: f64,
        /// Original PCM file relative to `expected/` (not committed; compare by `sha256`).
        file: Option<String>,
        /// Why no file was stored, when `file` is absent.
        file_note: Option<String>,
    },
    /// `{ok: false, ...}`: Omi raised; no audio was assembled.
    Failed {
        /// The exception type.
        error_type: DownloadErrorType,
        /// The exception message.
        error_message: String,
    },
}

/// The exception types a download case can raise in A–E.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum DownloadErrorType {
    /// "No chunks found for conversation <id>": nothing could be assembled.
    FileNotFoundError,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDownloadResult {
    ok: bool,
    len: Option<u64>,
    sha256: Option<String>,
    samples_equivalent_seconds: Option<f64>,
    file: Option<String>,
    file_note: Option<String>,
    error_type: Option<DownloadErrorType>,
    error_message: Option<String>,
}

/// Why a download `result` object has an inconsistent set of fields.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("download result with ok={ok}: {reason}")]
pub struct DownloadResultError {
    /// The `ok` flag of the object.
    pub ok: bool,
    /// What was wrong.
    pub reason: &'static str,
}

impl TryFrom<RawDownloadResult> for DownloadResult {
    type Error = DownloadResultError;

    fn try_from(raw: RawDownloadResult) -> Result<Self, Self::Error> {
        let err = |reason| DownloadResultError { ok: raw.ok, reason };
        if raw.ok {
            if raw.error_type.is_some() || raw.error_message.is_some() {
                return Err(err("error fields on a successful result"));
            }
            if raw.file.is_some() == raw.file_note.is_some() {
                return Err(err("exactly one of file / file_note must be present"));
            }
            match (raw.len, raw.sha256, raw.samples_equivalent_seconds) {
                (Some(len), Some(sha256), Some(samples_equivalent_seconds)) => Ok(Self::Audio {
                    len,
                    sha256,
                    samples_equivalent_seconds,
                    file: raw.file,
                    file_note: raw.file_note,
                }),
                _ => Err(err("missing len / sha256 / samples_equivalent_seconds")),
            }
        } else {
            if raw.len.is_some()
                || raw.sha256.is_some()
                || raw.samples_equivalent_seconds.is_some()
                || raw.file.is_some()
                || raw.file_note.is_some()
            {
                return Err(err("audio fields on a failed result"));
            }
            match (raw.error_type, raw.error_message) {
                (Some(error_type), Some(error_message)) => Ok(Self::Failed {
                    error_type,
                    error_message,
                }),
                _ => Err(err("missing error_type / error_message")),
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// expected/delete.json

/// One delete case, run on a fresh copy of the bucket.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteCase {
    /// Case name.
    pub case: String,
    /// The Omi function run.
    #[serde(rename = "fn")]
    pub function: DeleteFn,
    /// Conversation id.
    pub conversation_id: String,
    /// Timestamps passed (only for `delete_audio_chunks`), exact f64.
    pub timestamps: Option<Vec<f64>>,
    /// The same timestamps formatted with `%.3f`.
    pub timestamps_ts3: Option<Vec<String>>,
    /// What the case shows (may be null).
    pub note: Option<String>,
    /// What Omi returned.
    pub result: DeleteResult,
    /// Object names deleted.
    pub deleted: Vec<String>,
    /// Every object name left in the whole bucket.
    pub remaining: Vec<String>,
    /// Storage operation counts.
    pub op_counts: DeleteOpCounts,
    /// Storage operations in order.
    pub ops_in_order: Vec<StoreOp>,
}

/// The Omi delete functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeleteFn {
    /// `delete_audio_chunks(uid, conversation_id, timestamps)`.
    DeleteAudioChunks,
    /// `delete_conversation_audio_files(uid, conversation_id)`.
    DeleteConversationAudioFiles,
}

/// Return value of a delete case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteResult {
    /// Whether the call returned normally.
    pub ok: bool,
}

/// Storage operation counts of a delete case; an absent key means zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteOpCounts {
    /// `exists` probes.
    #[serde(default)]
    pub exists: u32,
    /// `list` calls.
    #[serde(default)]
    pub list: u32,
    /// `delete` calls.
    #[serde(default)]
    pub delete: u32,
}

/// A storage operation kind in `ops_in_order`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreOpKind {
    /// Existence probe of one object name.
    Exists,
    /// Listing of a prefix.
    List,
    /// Deletion of one object.
    Delete,
}

/// One storage operation: `[kind, name]` (`name` is a prefix for `list`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(from = "(StoreOpKind, String)")]
pub struct StoreOp {
    /// The operation.
    pub kind: StoreOpKind,
    /// Object name, or prefix for `list`.
    pub name: String,
}

impl From<(StoreOpKind, String)> for StoreOp {
    fn from((kind, name): (StoreOpKind, String)) -> Self {
        Self { kind, name }
    }
}

// ---------------------------------------------------------------------------------------------
// expected/objects.json

/// Analysis of one object in `bucket/`. Which optional fields are present depends on `format`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectEntry {
    /// Object name (path relative to `bucket/`).
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the object bytes, hex.
    pub sha256: String,
    /// Content type the object was stored with.
    pub content_type: String,
    /// Who wrote the object and from which inputs.
    pub source: ObjectSource,
    /// The object's format.
    pub format: ObjectFormat,
    /// Raw PCM: whether the bytes equal the inputs concatenated in stored order.
    pub equals_inputs_concat_in_stored_order: Option<bool>,
    /// Encrypted formats: the length-prefixed frames.
    pub frames: Option<Vec<Frame>>,
    /// Encrypted batches/singles: whether the frame plaintexts equal the inputs in stored order.
    pub frames_equal_inputs_in_stored_order: Option<bool>,
    /// Encrypted formats: total plaintext length.
    pub plaintext_len: Option<u64>,
    /// Encrypted formats: SHA-256 of the concatenated plaintext, hex.
    pub plaintext_sha256: Option<String>,
    /// Encrypted formats: what Omi's own decryptor returned.
    pub omi_decrypt_audio_file: Option<OmiDecryptResult>,
    /// Opus formats: container structure.
    pub opus: Option<OpusInfo>,
    /// Opus formats: libopus 1.3.1 decode of the container.
    pub opus_decoded: Option<OpusDecoded>,
}

/// Who wrote an object.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectSource {
    /// The writer.
    pub writer: Writer,
    /// Level of an Omi writer (absent for harness objects).
    pub level: Option<Level>,
    /// Input chunk ids the object was made from (empty for strays).
    pub chunk_ids: Vec<String>,
    /// Remark (harness objects).
    pub note: Option<String>,
}

/// The function that wrote an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Writer {
    /// Omi's `upload_audio_chunk`.
    UploadAudioChunk,
    /// Omi's `upload_audio_chunks_batch`.
    UploadAudioChunksBatch,
    /// Placed directly by the fixture generator.
    Harness,
}

/// Object formats found in A–E.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
pub enum ObjectFormat {
    /// `.bin` / `.batch.bin` (and the stray `abc.bin`).
    #[serde(rename = "raw PCM16LE")]
    RawPcm,
    /// `.enc` / `.batch.enc` / `speaker-embeddings.v1.enc`.
    #[serde(rename = "AES-256-GCM length-prefixed frames")]
    EncryptedFrames,
    /// `.opus.enc`.
    #[serde(rename = "AES-256-GCM length-prefixed frames around an Omi Opus container")]
    EncryptedOpus,
    /// `.opus`.
    #[serde(rename = "Omi Opus container (plaintext)")]
    Opus,
    /// Strays that `list_audio_chunks` ignores.
    #[serde(rename = "not an audio chunk (ignored by list_audio_chunks)")]
    NotAudio,
}

/// One length-prefixed AES-GCM frame of an encrypted object.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawFrame")]
pub enum Frame {
    /// The frame decrypted with the scenario key.
    Decrypted {
        /// Offset of the 4-byte length prefix.
        offset: u64,
        /// The big-endian length prefix (= 12 + plaintext length + 16).
        length_field: u64,
        /// Plaintext length.
        plaintext_len: u64,
        /// SHA-256 of the plaintext, hex.
        plaintext_sha256: String,
        /// Bytes the frame occupies (= 4 + `length_field`).
        consumed: u64,
    },
    /// The frame did not decrypt (e.g. truncated).
    Failed {
        /// Offset of the 4-byte length prefix.
        offset: u64,
        /// The big-endian length prefix as read.
        length_field: u64,
        /// The decryption error.
        decrypt_error: String,
    },
}

impl Frame {
    /// Returns the offset of the frame's length prefix.
    pub fn offset(&self) -> u64 {
        match self {
            Self::Decrypted { offset, .. } | Self::Failed { offset, .. } => *offset,
        }
    }

    /// Returns the frame's length field.
    pub fn length_field(&self) -> u64 {
        match self {
            Self::Decrypted { length_field, .. } | Self::Failed { length_field, .. } => {
                *length_field
            }
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFrame {
    offset: u64,
    length_field: u64,
    plaintext_len: Option<u64>,
    plaintext_sha256: Option<String>,
    consumed: Option<u64>,
    decrypt_error: Option<String>,
}

/// Why a frame object has an inconsistent set of fields.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "frame at offset {offset}: needs either plaintext_len+plaintext_sha256+consumed or decrypt_error alone"
)]
pub struct FrameShapeError {
    /// The frame's offset.
    pub offset: u64,
}

impl TryFrom<RawFrame> for Frame {
    type Error = FrameShapeError;

    fn try_from(raw: RawFrame) -> Result<Self, Self::Error> {
        match (
            raw.plaintext_len,
            raw.plaintext_sha256,
            raw.consumed,
            raw.decrypt_error,
        ) {
            (Some(plaintext_len), Some(plaintext_sha256), Some(consumed), None) => {
                Ok(Self::Decrypted {
                    offset: raw.offset,
                    length_field: raw.length_field,
                    plaintext_len,
                    plaintext_sha256,
                    consumed,
                })
            }
            (None, None, None, Some(decrypt_error)) => Ok(Self::Failed {
                offset: raw.offset,
                length_field: raw.length_field,
                decrypt_error,
            }),
            _ => Err(FrameShapeError { offset: raw.offset }),
        }
    }
}

/// What Omi's `decrypt_audio_file` returned for an object.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawOmiDecrypt")]
pub enum OmiDecryptResult {
    /// Decrypted to `len` bytes with digest `sha256`.
    Ok {
        /// Plaintext length.
        len: u64,
        /// SHA-256 of the plaintext, hex.
        sha256: String,
    },
    /// Raised `error`.
    Err {
        /// Exception text.
        error: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOmiDecrypt {
    ok: bool,
    len: Option<u64>,
    sha256: Option<String>,
    error: Option<String>,
}

/// Why an `omi_decrypt_audio_file` object has an inconsistent set of fields.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("omi_decrypt_audio_file with ok={ok}: wrong set of fields")]
pub struct OmiDecryptShapeError {
    /// The `ok` flag of the object.
    pub ok: bool,
}

impl TryFrom<RawOmiDecrypt> for OmiDecryptResult {
    type Error = OmiDecryptShapeError;

    fn try_from(raw: RawOmiDecrypt) -> Result<Self, Self::Error> {
        match (raw.ok, raw.len, raw.sha256, raw.error) {
            (true, Some(len), Some(sha256), None) => Ok(Self::Ok { len, sha256 }),
            (false, None, None, Some(error)) => Ok(Self::Err { error }),
            (ok, ..) => Err(OmiDecryptShapeError { ok }),
        }
    }
}

/// Structure of an Omi Opus container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpusInfo {
    /// Header: number of packets.
    pub packet_count: u64,
    /// Header: PCM bytes fed to the encoder.
    pub original_pcm_len: u64,
    /// Smallest packet length.
    pub packet_len_min: u64,
    /// Largest packet length.
    pub packet_len_max: u64,
    /// Container length in bytes.
    pub container_len: u64,
    /// Bytes after the last packet.
    pub trailing_bytes: u64,
}

/// Result of decoding an Opus container with libopus 1.3.1.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpusDecoded {
    /// Decoded PCM length in bytes.
    pub len: u64,
    /// SHA-256 of the decoded PCM, hex.
    pub sha256: String,
}

// ---------------------------------------------------------------------------------------------
// expected/checks.json

/// One self-check of the fixture generator (all true).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Check {
    /// What was checked.
    pub check: String,
    /// The outcome.
    pub ok: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_are_rejected() {
        let ok = r#"{"timestamp": 1.5, "path": "p", "size": 3, "is_batch": false}"#;
        assert!(serde_json::from_str::<ListEntry>(ok).is_ok());
        let extra = r#"{"timestamp": 1.5, "path": "p", "size": 3, "is_batch": false, "span": 1}"#;
        assert!(serde_json::from_str::<ListEntry>(extra).is_err());
    }

    #[test]
    fn tagged_call_rejects_unknown_fn_and_unknown_fields() {
        let put =
            r#"{"fn": "harness_put_object", "name": "n", "note": "x", "len": 1, "sha256": "s"}"#;
        assert!(matches!(
            serde_json::from_str::<Call>(put),
            Ok(Call::HarnessPutObject(_))
        ));
        let unknown_fn = put.replace("harness_put_object", "something_else");
        assert!(serde_json::from_str::<Call>(&unknown_fn).is_err());
        let extra = put.replace("\"len\"", "\"extra\": 0, \"len\"");
        assert!(serde_json::from_str::<Call>(&extra).is_err());
    }

    #[test]
    fn unobserved_shapes_fail() {
        assert!(serde_json::from_str::<Option<Unobserved>>("null").is_ok());
        assert!(serde_json::from_str::<Option<Unobserved>>("[]").is_err());
        assert!(serde_json::from_str::<Vec<Unobserved>>("[]").is_ok());
        assert!(serde_json::from_str::<Vec<Unobserved>>("[{}]").is_err());
    }

    #[test]
    fn write_ops_parse_and_reject_bad_arrays() {
        let ops: Vec<WriteOp> = serde_json::from_str(
            r#"[["open_wb", "a"], ["open_wb_commit", "a", 12], ["upload", "b"]]"#,
        )
        .expect("valid ops");
        assert_eq!(
            ops,
            vec![
                WriteOp::OpenWb { name: "a".into() },
                WriteOp::OpenWbCommit {
                    name: "a".into(),
                    write_calls: 12
                },
                WriteOp::Upload { name: "b".into() },
            ]
        );
        for bad in [
            r#"["upload"]"#,
            r#"["upload", "a", 1]"#,
            r#"["open_wb_commit", "a"]"#,
            r#"["open_wb_commit", "a", -1]"#,
            r#"["rename", "a"]"#,
            r#"[1, "a"]"#,
        ] {
            assert!(serde_json::from_str::<WriteOp>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn download_result_requires_consistent_fields() {
        let audio = r#"{"ok": true, "len": 2, "sha256": "s", "samples_equivalent_seconds": 0.0, "file": "f"}"#;
        assert!(matches!(
            serde_json::from_str::<DownloadResult>(audio),
            Ok(DownloadResult::Audio { len: 2, .. })
        ));
        let err = r#"{"ok": false, "error_type": "FileNotFoundError", "error_message": "m"}"#;
        assert!(matches!(
            serde_json::from_str::<DownloadResult>(err),
            Ok(DownloadResult::Failed { .. })
        ));
        for bad in [
            r#"{"ok": true, "len": 2, "sha256": "s", "samples_equivalent_seconds": 0.0}"#,
            r#"{"ok": false, "error_type": "FileNotFoundError", "error_message": "m", "len": 1}"#,
            r#"{"ok": false, "error_type": "ValueError", "error_message": "m"}"#,
        ] {
            assert!(
                serde_json::from_str::<DownloadResult>(bad).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn frames_need_one_of_two_shapes() {
        let good = r#"{"offset": 0, "length_field": 30, "plaintext_len": 2, "plaintext_sha256": "s", "consumed": 34}"#;
        assert!(matches!(
            serde_json::from_str::<Frame>(good),
            Ok(Frame::Decrypted { consumed: 34, .. })
        ));
        let failed = r#"{"offset": 0, "length_field": 30, "decrypt_error": "InvalidTag: "}"#;
        assert!(matches!(
            serde_json::from_str::<Frame>(failed),
            Ok(Frame::Failed { .. })
        ));
        let mixed = r#"{"offset": 0, "length_field": 30, "consumed": 34, "decrypt_error": "x"}"#;
        assert!(serde_json::from_str::<Frame>(mixed).is_err());
    }
}
