//! The 48-byte pack header: codec, sample format and sealing parameters.

use std::fmt;

use super::error::{PackError, PackPart};
use super::{HEADER_LEN, MAGIC, MAX_SAMPLE_RATE, NONCE_PREFIX_LEN, SALT_LEN, VERSION, VERSION_1};

/// How a pack's frames encode their PCM (header byte 5).
///
/// Ids are part of the format: 0, 1 and 2 are defined by version 1, every other value is
/// rejected with [`PackError::UnknownCodec`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Codec {
    /// Id 0: each frame is the chunk's PCM16LE bytes as they are.
    Pcm16Le,
    /// Id 1: each frame is one zstd frame (with its content size) of the chunk's PCM16LE bytes.
    ZstdPcm16Le,
    /// Id 2: each frame is one chunk encoded by a [`super::FrameCodec`] (chunk-service: an Omi
    /// Opus container, 16 kHz mono VOIP 20 ms packets). Lossy; the index keeps the exact sample
    /// count, and a frame decodes to exactly `sample_count × 2` bytes. Only 16 kHz mono.
    Opus,
}

impl Codec {
    /// The id of [`Codec::Opus`] (named when the id was only reserved; kept for callers).
    pub const OPUS_RESERVED_ID: u8 = 2;

    /// The only sample rate an Opus pack may have (Omi's).
    pub const OPUS_SAMPLE_RATE: u32 = 16_000;

    /// The codec's id in the header.
    pub const fn id(self) -> u8 {
        match self {
            Codec::Pcm16Le => 0,
            Codec::ZstdPcm16Le => 1,
            Codec::Opus => Codec::OPUS_RESERVED_ID,
        }
    }

    /// The codec with header id `id`, if this version knows it.
    pub const fn from_id(id: u8) -> Option<Codec> {
        match id {
            0 => Some(Codec::Pcm16Le),
            1 => Some(Codec::ZstdPcm16Le),
            Codec::OPUS_RESERVED_ID => Some(Codec::Opus),
            _ => None,
        }
    }

    /// A short lowercase name: `pcm16le`, `zstd-pcm16le` or `opus`.
    pub const fn name(self) -> &'static str {
        match self {
            Codec::Pcm16Le => "pcm16le",
            Codec::ZstdPcm16Le => "zstd-pcm16le",
            Codec::Opus => "opus",
        }
    }

    /// Tells whether decoding gives back other PCM than was encoded (Opus); the length and
    /// timing are exact for every codec.
    pub const fn is_lossy(self) -> bool {
        matches!(self, Codec::Opus)
    }

    /// Tells whether the container needs a caller-supplied [`super::FrameCodec`] to encode and
    /// decode this codec's frames (Opus).
    pub const fn needs_frame_codec(self) -> bool {
        matches!(self, Codec::Opus)
    }
}

impl fmt::Display for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which construction derived a sealed pack's object key; the header's version byte records it.
///
/// The container is the same for both. Only the sealer and the opener (chunk-crypto) differ in
/// what the key is bound to; docs/FORMAT.md ("Sealing") gives both derivations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeyScheme {
    /// Header version 1: the object key is derived from the user's Omi key and a salt; it binds
    /// the user only. Read, never written, by this version.
    V1,
    /// Header version 2: the object key is derived from a pack root key kept apart from Omi's
    /// key, and binds the user and the conversation.
    V2,
}

impl KeyScheme {
    /// The header version that records this scheme.
    pub const fn header_version(self) -> u8 {
        match self {
            KeyScheme::V1 => VERSION_1,
            KeyScheme::V2 => VERSION,
        }
    }
}

/// What an opener needs to open a sealed pack, as the header records it (none of it secret).
///
/// `chunk-crypto` fills it from its per-pack parameters: the key scheme, the key id of the
/// master secret, the salt of the per-object key derivation and the STREAM nonce prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SealInfo {
    /// How the object key is derived (the header's version byte).
    pub scheme: KeyScheme,
    /// Which master secret of the key ring sealed the pack.
    pub key_id: u32,
    /// Salt of the per-object key derivation (random per pack).
    pub salt: [u8; SALT_LEN],
    /// First bytes of every frame nonce (random per pack).
    pub nonce_prefix: [u8; NONCE_PREFIX_LEN],
}

/// A pack's header: codec, sample rate, channels and (when sealed) the sealing parameters.
///
/// Construct one with [`PackHeader::new`] (validates) or read one with [`PackHeader::parse`];
/// [`PackHeader::to_bytes`] gives the 48 bytes the pack stores at offset 0 and in its trailer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PackHeader {
    codec: Codec,
    sample_rate: u32,
    channels: u8,
    seal: Option<SealInfo>,
}

// Field offsets inside the header.
const OFF_VERSION: usize = 4;
const OFF_CODEC: usize = 5;
const OFF_FLAGS: usize = 6;
const OFF_CHANNELS: usize = 7;
const OFF_RATE: usize = 8;
const OFF_HEADER_LEN: usize = 12;
const OFF_RESERVED_A: usize = 14;
const OFF_KEY_ID: usize = 16;
const OFF_SALT: usize = 20;
const OFF_PREFIX: usize = OFF_SALT + SALT_LEN;
const OFF_RESERVED_B: usize = OFF_PREFIX + NONCE_PREFIX_LEN;
const OFF_CRC: usize = HEADER_LEN - 4;

/// Flag bit 0: the pack is sealed.
const FLAG_ENCRYPTED: u8 = 1;

impl PackHeader {
    /// Makes a header; fails with [`PackError::BadConfig`] for a sample rate outside
    /// `1..=`[`MAX_SAMPLE_RATE`], zero channels, or an Opus pack that is not 16 kHz mono.
    pub fn new(
        codec: Codec,
        sample_rate: u32,
        channels: u8,
        seal: Option<SealInfo>,
    ) -> Result<PackHeader, PackError> {
        if sample_rate == 0 || sample_rate > MAX_SAMPLE_RATE {
            return Err(PackError::BadConfig {
                reason: format!("sample rate {sample_rate} is outside 1..={MAX_SAMPLE_RATE}"),
            });
        }
        if channels == 0 {
            return Err(PackError::BadConfig {
                reason: "a pack needs at least one channel".to_owned(),
            });
        }
        if codec == Codec::Opus && (sample_rate != Codec::OPUS_SAMPLE_RATE || channels != 1) {
            return Err(PackError::BadConfig {
                reason: format!(
                    "an Opus pack must be 16000 Hz mono (Omi's format), not {sample_rate} Hz \
                     with {channels} channels"
                ),
            });
        }
        Ok(PackHeader {
            codec,
            sample_rate,
            channels,
            seal,
        })
    }

    /// How the frames encode their PCM.
    pub fn codec(&self) -> Codec {
        self.codec
    }

    /// Sample frames per second.
    pub fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    /// Interleaved channels per sample frame.
    pub fn channels(&self) -> u8 {
        self.channels
    }

    /// Bytes per sample frame: 2 × channels.
    pub fn block_align(&self) -> u32 {
        2 * u32::from(self.channels)
    }

    /// The sealing parameters, `None` for a plaintext pack.
    pub fn seal(&self) -> Option<&SealInfo> {
        self.seal.as_ref()
    }

    /// The container version this header is written as (byte 4): 2 for a pack sealed under
    /// [`KeyScheme::V2`], 1 for plaintext packs and packs sealed under [`KeyScheme::V1`].
    ///
    /// Plaintext packs stay version 1, so every reader since the first one reads them.
    pub fn version(&self) -> u8 {
        self.seal.map_or(VERSION_1, |s| s.scheme.header_version())
    }

    /// Whether the frames and the index are sealed.
    pub fn is_encrypted(&self) -> bool {
        self.seal.is_some()
    }

    /// The key id of a sealed pack.
    pub fn key_id(&self) -> Option<u32> {
        self.seal.map(|s| s.key_id)
    }

    /// Duration in milliseconds of `samples` sample frames, rounded up:
    /// `ceil(samples × 1000 / sample_rate)`. This is how a chunk's end (and a pack's name) is
    /// computed.
    pub fn duration_ms(&self, samples: u32) -> u64 {
        (u64::from(samples) * 1000).div_ceil(u64::from(self.sample_rate))
    }

    /// The 48 bytes of this header (layout in docs/FORMAT.md).
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[..4].copy_from_slice(&MAGIC);
        out[OFF_VERSION] = self.version();
        out[OFF_CODEC] = self.codec.id();
        out[OFF_FLAGS] = if self.seal.is_some() {
            FLAG_ENCRYPTED
        } else {
            0
        };
        out[OFF_CHANNELS] = self.channels;
        out[OFF_RATE..OFF_RATE + 4].copy_from_slice(&self.sample_rate.to_le_bytes());
        out[OFF_HEADER_LEN..OFF_HEADER_LEN + 2].copy_from_slice(&(HEADER_LEN as u16).to_le_bytes());
        if let Some(seal) = &self.seal {
            out[OFF_KEY_ID..OFF_KEY_ID + 4].copy_from_slice(&seal.key_id.to_le_bytes());
            out[OFF_SALT..OFF_PREFIX].copy_from_slice(&seal.salt);
            out[OFF_PREFIX..OFF_RESERVED_B].copy_from_slice(&seal.nonce_prefix);
        }
        let crc = crc32c::crc32c(&out[..OFF_CRC]);
        out[OFF_CRC..].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// Parses the 48 header bytes found at object offset `at` (`part` says whether they are
    /// the leading header or the trailer's copy, for errors).
    ///
    /// Checks, in this order: magic, version (1 or 2), checksum, codec, flags, channels, sample
    /// rate (an Opus pack: 16 kHz mono), header length, reserved bytes (zero), and that a
    /// plaintext header is version 1 and has no sealing fields.
    pub fn parse(
        bytes: &[u8; HEADER_LEN],
        at: u64,
        part: PackPart,
    ) -> Result<PackHeader, PackError> {
        let field = |off: usize| at + off as u64;
        let [m0, m1, m2, m3, ..] = *bytes;
        if [m0, m1, m2, m3] != MAGIC {
            return Err(PackError::BadMagic {
                part,
                offset: at,
                found: [m0, m1, m2, m3],
            });
        }
        let scheme = match bytes[OFF_VERSION] {
            VERSION_1 => KeyScheme::V1,
            VERSION => KeyScheme::V2,
            version => {
                return Err(PackError::UnsupportedVersion {
                    part,
                    offset: field(OFF_VERSION),
                    version,
                });
            }
        };
        let stored = le_u32(bytes, OFF_CRC);
        let computed = crc32c::crc32c(&bytes[..OFF_CRC]);
        if stored != computed {
            return Err(PackError::Checksum {
                part,
                offset: at,
                stored,
                computed,
            });
        }
        let codec = Codec::from_id(bytes[OFF_CODEC]).ok_or(PackError::UnknownCodec {
            part,
            offset: field(OFF_CODEC),
            codec: bytes[OFF_CODEC],
        })?;
        let bad = |off: usize, reason: &'static str| PackError::BadHeader {
            part,
            offset: field(off),
            reason,
        };
        let flags = bytes[OFF_FLAGS];
        if flags & !FLAG_ENCRYPTED != 0 {
            return Err(bad(
                OFF_FLAGS,
                "unknown flag bits set (only bit 0, encrypted, is defined)",
            ));
        }
        let channels = bytes[OFF_CHANNELS];
        if channels == 0 {
            return Err(bad(OFF_CHANNELS, "zero channels"));
        }
        let sample_rate = le_u32(bytes, OFF_RATE);
        if sample_rate == 0 || sample_rate > MAX_SAMPLE_RATE {
            return Err(bad(OFF_RATE, "sample rate outside 1..=768000"));
        }
        if codec == Codec::Opus && (sample_rate != Codec::OPUS_SAMPLE_RATE || channels != 1) {
            let off = if channels != 1 {
                OFF_CHANNELS
            } else {
                OFF_RATE
            };
            return Err(bad(off, "an Opus pack must be 16000 Hz mono"));
        }
        if usize::from(le_u16(bytes, OFF_HEADER_LEN)) != HEADER_LEN {
            return Err(bad(OFF_HEADER_LEN, "header length is not 48"));
        }
        if le_u16(bytes, OFF_RESERVED_A) != 0 || bytes[OFF_RESERVED_B] != 0 {
            let off = if le_u16(bytes, OFF_RESERVED_A) != 0 {
                OFF_RESERVED_A
            } else {
                OFF_RESERVED_B
            };
            return Err(bad(off, "reserved bytes are not zero"));
        }
        let key_id = le_u32(bytes, OFF_KEY_ID);
        let mut salt = [0u8; SALT_LEN];
        salt.copy_from_slice(&bytes[OFF_SALT..OFF_PREFIX]);
        let mut nonce_prefix = [0u8; NONCE_PREFIX_LEN];
        nonce_prefix.copy_from_slice(&bytes[OFF_PREFIX..OFF_RESERVED_B]);
        let seal = if flags & FLAG_ENCRYPTED != 0 {
            Some(SealInfo {
                scheme,
                key_id,
                salt,
                nonce_prefix,
            })
        } else {
            if scheme != KeyScheme::V1 {
                return Err(bad(
                    OFF_VERSION,
                    "a plaintext pack is version 1 (version 2 names how a sealed pack's key is \
                     derived)",
                ));
            }
            if bytes[OFF_KEY_ID..OFF_RESERVED_B].iter().any(|&b| b != 0) {
                return Err(bad(
                    OFF_KEY_ID,
                    "a plaintext header has a non-zero key id, salt or nonce prefix",
                ));
            }
            None
        };
        Ok(PackHeader {
            codec,
            sample_rate,
            channels,
            seal,
        })
    }
}

impl fmt::Display for PackHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "pack v{} codec={} sample_rate={} channels={}",
            self.version(),
            self.codec,
            self.sample_rate,
            self.channels
        )?;
        match &self.seal {
            None => f.write_str(" plaintext"),
            Some(seal) => {
                write!(f, " sealed key_id={} salt=", seal.key_id)?;
                seal.salt.iter().try_for_each(|b| write!(f, "{b:02x}"))?;
                f.write_str(" nonce_prefix=")?;
                seal.nonce_prefix
                    .iter()
                    .try_for_each(|b| write!(f, "{b:02x}"))
            }
        }
    }
}

/// Little-endian `u16` at `off` of a fixed-size buffer the caller has sized.
pub(super) fn le_u16(bytes: &[u8], off: usize) -> u16 {
    let mut b = [0u8; 2];
    if let Some(src) = bytes.get(off..off + 2) {
        b.copy_from_slice(src);
    }
    u16::from_le_bytes(b)
}

/// Little-endian `u32` at `off` (zero if out of bounds; callers pass fixed-size buffers).
pub(super) fn le_u32(bytes: &[u8], off: usize) -> u32 {
    let mut b = [0u8; 4];
    if let Some(src) = bytes.get(off..off + 4) {
        b.copy_from_slice(src);
    }
    u32::from_le_bytes(b)
}

/// Little-endian `u64` at `off` (zero if out of bounds; callers pass fixed-size buffers).
pub(super) fn le_u64(bytes: &[u8], off: usize) -> u64 {
    let mut b = [0u8; 8];
    if let Some(src) = bytes.get(off..off + 8) {
        b.copy_from_slice(src);
    }
    u64::from_le_bytes(b)
}
