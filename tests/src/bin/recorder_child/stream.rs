//! The stream the recorder crash test records: deterministic users, conversations, timestamps
//! and PCM, shared by the `recorder-child` binary and `it/recorder_crash.rs`.

use std::error::Error;
use std::path::Path;
use std::sync::Arc;

use chunk_crypto::{KeyId, Keyring, MasterSecret};
use chunk_service::{BatchLayout, ChunkService, InMemoryLevels, ProtectionLevel, ServiceConfig};
use chunk_store::{ConversationId, Store, UserId};

/// Start of chunk 0, in epoch milliseconds.
pub(crate) const T0_MS: u64 = 1_786_961_845_727;
/// Length of one chunk: 0.5 s of 16 kHz PCM16 mono.
pub(crate) const CHUNK_MS: u64 = 500;
/// Bytes of one chunk.
pub(crate) const CHUNK_BYTES: usize = 16_000;
/// Chunks per conversation; the child switches conversation after this many.
pub(crate) const CHUNKS_PER_CONVERSATION: u64 = 100;
/// Chunks per batch: the recorder flushes every 3 s of audio.
pub(crate) const CHUNKS_PER_BATCH: u64 = 6;
/// The users the child records: every batch layout the recorder writes, at both levels the
/// service handles (plaintext and sealed). Each layout has its own recorder and spool.
pub(crate) const USERS: [(&str, ProtectionLevel, BatchLayout); 4] = [
    (
        "crash-pack-standard",
        ProtectionLevel::Standard,
        BatchLayout::Pack,
    ),
    (
        "crash-pack-enhanced",
        ProtectionLevel::Enhanced,
        BatchLayout::Pack,
    ),
    (
        "crash-omi-standard",
        ProtectionLevel::Standard,
        BatchLayout::Omi,
    ),
    (
        "crash-omi-enhanced",
        ProtectionLevel::Enhanced,
        BatchLayout::Omi,
    ),
];

/// The batch layouts the child records, each through its own recorder and spool directory.
pub(crate) const LAYOUTS: [(BatchLayout, &str); 2] =
    [(BatchLayout::Pack, "pack"), (BatchLayout::Omi, "omi")];

/// The start of chunk `index`, in epoch milliseconds.
pub(crate) fn timestamp_ms(index: u64) -> u64 {
    T0_MS + index * CHUNK_MS
}

/// The chunk index whose start is `millis`, if it is one.
pub(crate) fn index_of(millis: u64) -> Option<u64> {
    let offset = millis.checked_sub(T0_MS)?;
    (offset % CHUNK_MS == 0).then_some(offset / CHUNK_MS)
}

/// The first chunk index that starts after `millis`.
pub(crate) fn next_after(millis: u64) -> u64 {
    millis
        .checked_sub(T0_MS)
        .map_or(0, |offset| offset / CHUNK_MS + 1)
}

/// The conversation chunk `index` belongs to.
pub(crate) fn conversation_of(index: u64) -> u64 {
    index / CHUNKS_PER_CONVERSATION
}

/// The user id of `USERS[user]`.
pub(crate) fn user_id(user: usize) -> Result<UserId, Box<dyn Error>> {
    Ok(UserId::new(USERS[user].0)?)
}

/// The id of conversation number `number`.
pub(crate) fn conversation_id(number: u64) -> Result<ConversationId, Box<dyn Error>> {
    Ok(ConversationId::new(format!("conv-{number}"))?)
}

/// The PCM of chunk `index` of `USERS[user]`: a splitmix64 byte stream, different for every
/// user and chunk, so a chunk stored in the wrong place or twice never compares equal.
pub(crate) fn pcm(user: usize, index: u64) -> Vec<u8> {
    let mut state = ((user as u64) << 48) ^ index ^ 0x5eed_cafe_f00d_0001;
    let mut out = Vec::with_capacity(CHUNK_BYTES);
    while out.len() < CHUNK_BYTES {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        out.extend_from_slice(&z.to_le_bytes());
    }
    out.truncate(CHUNK_BYTES);
    out
}

/// The service over the fs bucket at `bucket` writing batches in `layout`, with the test key
/// ring and the users' levels.
pub(crate) fn service(bucket: &Path, layout: BatchLayout) -> Result<ChunkService, Box<dyn Error>> {
    let store = Store::from_uri(&format!("fs://{}", bucket.display()))?;
    let keyring = Keyring::single(KeyId::new(1), MasterSecret::new(b"omi_".repeat(16))?);
    let levels = InMemoryLevels::new(ProtectionLevel::Standard);
    for (user, (_, level, _)) in USERS.iter().enumerate() {
        levels.set(&user_id(user)?, *level);
    }
    let config = ServiceConfig {
        batch_layout: layout,
        ..ServiceConfig::default()
    };
    Ok(ChunkService::new(
        store,
        Some(keyring),
        Arc::new(levels),
        config,
    )?)
}
