//! Service configuration: one struct, no boolean parameters on the calls.

use std::num::NonZeroUsize;

use chunk_format::pack::PackConfig;

/// What the service writes for a batch upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BatchLayout {
    /// chunkvault's native pack (`START-END.pack`): exact per-chunk timing, ranged reads of one
    /// chunk, zstd, authenticated order and completeness. The default for new writes.
    #[default]
    Pack,
    /// Omi's layout: `FIRST-LAST.batch.{bin,enc}` (raw PCM concatenated, or one Omi frame per
    /// chunk). Readable by Omi's own code.
    Omi,
    /// One object per chunk (`TS.bin` / `TS.enc`), as Omi does with batching disabled.
    PerChunk,
}

/// What the service writes for a single-chunk upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SingleFormat {
    /// Raw PCM: `TS.bin` / `TS.enc` (Omi V0 and V1 with Opus off).
    #[default]
    Pcm,
    /// Omi's current single upload: an Omi Opus container, `TS.opus` / `TS.opus.enc`
    /// (16 kHz mono VOIP, 20 ms frames; encoding needs the `libopus` feature).
    Opus,
}

/// Whether the service holds key material, and what happens to `enhanced` users without it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EncryptionPolicy {
    /// The service must be constructed with a key ring; construction fails without one.
    #[default]
    Required,
    /// No key ring is needed. Uploads for `enhanced` users then fail with
    /// [`crate::ServiceError::NoKeyMaterial`] — the service never writes their audio in plaintext.
    Disabled,
}

/// Default of [`ServiceConfig::max_decoded_chunk`]: 16 MiB.
pub const DEFAULT_MAX_DECODED_CHUNK: usize = 16 << 20;

/// Configuration of a [`crate::ChunkService`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceConfig {
    /// What batch uploads write.
    pub batch_layout: BatchLayout,
    /// What single-chunk uploads write.
    pub single_format: SingleFormat,
    /// Codec, sample rate, channels and zstd level of the packs written.
    pub pack: PackConfig,
    /// Key material policy (fail closed by default).
    pub encryption: EncryptionPolicy,
    /// Objects fetched concurrently by a download (Omi: 8 per call).
    pub download_concurrency: NonZeroUsize,
    /// Upper bound on the bytes a download holds in flight (objects as read plus what they
    /// decode to); the concurrency is lowered so that `(concurrency + 1) × largest job` stays
    /// under it (at least one job in flight).
    pub download_memory_budget: usize,
    /// Largest piece of decoded audio any read holds at once: one pack chunk, or one Omi
    /// object (all its frames). Every read checks what an object *claims* it decodes to (a
    /// pack entry's plain length, an Omi object's size, an Opus container's packet count and
    /// declared length) against it before decoding, and refuses more with
    /// [`crate::ServiceError::TooLarge`]; so a small hostile object cannot make a read hold
    /// gigabytes. Writes obey it too. Default 16 MiB: 8.7 minutes of 16 kHz mono, 87 s of
    /// 48 kHz stereo, far above the 5 s chunks and 60 s batches devices send.
    pub max_decoded_chunk: usize,
    /// Treat every user as needing sealed packs, whatever their level: a plaintext pack is
    /// then refused with [`crate::ServiceError::Unsealed`] by every read, as it always is for
    /// a user at level `enhanced`. For deployments where every user's audio is sealed.
    pub require_sealed: bool,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            batch_layout: BatchLayout::Pack,
            single_format: SingleFormat::Pcm,
            pack: PackConfig::default(),
            encryption: EncryptionPolicy::Required,
            download_concurrency: NonZeroUsize::new(8).unwrap_or(NonZeroUsize::MIN),
            download_memory_budget: 8 * 1024 * 1024,
            max_decoded_chunk: DEFAULT_MAX_DECODED_CHUNK,
            require_sealed: false,
        }
    }
}
