//! WAV (RIFF, PCM 16-bit) headers: the canonical 44-byte header Python's `wave` module writes
//! (compat doc §3.3), and a total parser for the PCM16 files `ingest` reads.
//!
//! Writing: [`wav_header`] (or [`WavSpec::header`]) gives the 44 bytes to put before `data_len`
//! bytes of interleaved PCM16LE samples. A streaming writer computes the data length up front,
//! writes the header, then streams the samples; no seeking back is needed.
//!
//! Reading: [`parse_wav_pcm16`] walks the RIFF chunks (skipping `LIST`, `fact` and any other
//! chunk, honouring the pad byte after odd-sized chunks), checks the `fmt ` chunk says 16-bit
//! PCM, and says where the samples are. It never panics, allocates nothing and every loop
//! advances at least 8 bytes.

use std::ops::Range;

/// Length of the canonical header [`wav_header`] writes.
pub const WAV_HEADER_LEN: usize = 44;

/// Bits per sample of every WAV this module writes or accepts.
pub const WAV_BITS_PER_SAMPLE: u16 = 16;

/// `WAVE_FORMAT_PCM`.
const FORMAT_PCM: u16 = 1;
/// `WAVE_FORMAT_EXTENSIBLE`; accepted when its sub-format is PCM.
const FORMAT_EXTENSIBLE: u16 = 0xFFFE;
/// `KSDATAFORMAT_SUBTYPE_PCM` (00000001-0000-0010-8000-00aa00389b71) as stored in the file.
const SUBTYPE_PCM: [u8; 16] = [
    0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x80, 0x00, 0x00, 0xaa, 0x00, 0x38, 0x9b, 0x71,
];
/// A `data` size meaning "until the end of the input", written by writers that cannot seek.
const DATA_LEN_UNKNOWN: u32 = u32::MAX;

/// Why a WAV header cannot be written, or why bytes are not a PCM16 WAV.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WavError {
    /// A spec with zero channels or a zero sample rate.
    #[error("invalid WAV spec: {sample_rate} Hz, {channels} channels")]
    InvalidSpec {
        /// The sample rate given.
        sample_rate: u32,
        /// The channel count given.
        channels: u16,
    },
    /// Block align (`2 × channels`) or byte rate (`rate × block align`) overflow the header's
    /// fields.
    #[error("WAV spec {sample_rate} Hz × {channels} channels overflows the header fields")]
    SpecOverflow {
        /// The sample rate given.
        sample_rate: u32,
        /// The channel count given.
        channels: u16,
    },
    /// `36 + data_len` does not fit the RIFF size field.
    #[error("{data_len} data bytes do not fit a RIFF size field")]
    DataTooLong {
        /// The data length given.
        data_len: u32,
    },
    /// The input is shorter than the 12-byte RIFF/WAVE preamble.
    #[error("WAV input of {len} bytes is shorter than the 12-byte RIFF header")]
    TooShort {
        /// Length of the input.
        len: usize,
    },
    /// The input does not start with `RIFF`.
    #[error("not a RIFF file: starts with {found:?}")]
    NotRiff {
        /// The first four bytes, escaped.
        found: String,
    },
    /// The RIFF form type at offset 8 is not `WAVE`.
    #[error("RIFF form type is {found:?}, not \"WAVE\"")]
    NotWave {
        /// The form type, escaped.
        found: String,
    },
    /// Fewer than 8 bytes remain where a chunk header should start.
    #[error("truncated chunk header at offset {offset} ({remaining} of 8 bytes)")]
    TruncatedChunkHeader {
        /// Byte offset of the chunk header.
        offset: usize,
        /// Bytes left in the input.
        remaining: usize,
    },
    /// A chunk's declared size runs past the end of the input.
    #[error(
        "chunk {id:?} at offset {offset} declares {declared} bytes but only {available} remain"
    )]
    ChunkPastEnd {
        /// The chunk id, escaped.
        id: String,
        /// Byte offset of the chunk header.
        offset: usize,
        /// The declared size.
        declared: u32,
        /// Bytes available after the chunk header.
        available: usize,
    },
    /// The `fmt ` chunk is shorter than the 16 bytes of a PCM format.
    #[error("fmt chunk at offset {offset} has {len} bytes, fewer than 16")]
    FmtTooShort {
        /// Byte offset of the chunk header.
        offset: usize,
        /// Its size.
        len: u32,
    },
    /// A second `fmt ` chunk.
    #[error("second fmt chunk at offset {offset}")]
    DuplicateFmt {
        /// Byte offset of the second chunk's header.
        offset: usize,
    },
    /// The format is not PCM (nor WAVE_FORMAT_EXTENSIBLE with a PCM sub-format).
    #[error("fmt chunk at offset {offset}: format tag {tag:#06x} is not PCM")]
    NotPcm {
        /// Byte offset of the fmt chunk header.
        offset: usize,
        /// The format tag found.
        tag: u16,
    },
    /// The samples are not 16-bit.
    #[error("fmt chunk at offset {offset}: {bits} bits per sample, only 16 is supported")]
    UnsupportedBits {
        /// Byte offset of the fmt chunk header.
        offset: usize,
        /// The bits per sample found (for the extensible format: the valid bits).
        bits: u16,
    },
    /// Zero channels, a zero sample rate, or a block align other than `2 × channels`.
    #[error(
        "fmt chunk at offset {offset}: inconsistent format ({sample_rate} Hz, {channels} channels, block align {block_align})"
    )]
    BadFmt {
        /// Byte offset of the fmt chunk header.
        offset: usize,
        /// The sample rate found.
        sample_rate: u32,
        /// The channel count found.
        channels: u16,
        /// The block align found.
        block_align: u16,
    },
    /// A `data` chunk came before any `fmt ` chunk.
    #[error("data chunk at offset {offset} comes before the fmt chunk")]
    DataBeforeFmt {
        /// Byte offset of the data chunk header.
        offset: usize,
    },
    /// The chunks ended without a `fmt ` chunk.
    #[error("no fmt chunk")]
    MissingFmt,
    /// The chunks ended without a `data` chunk.
    #[error("no data chunk")]
    MissingData,
}

/// Renders a four-character code for an error message.
fn fourcc(bytes: &[u8]) -> String {
    bytes.escape_ascii().to_string()
}

/// The sample format of a PCM16 WAV: rate and channel count (samples are always 16-bit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WavSpec {
    /// Frames per second.
    pub sample_rate: u32,
    /// Interleaved channels.
    pub channels: u16,
}

impl WavSpec {
    /// Omi's audio: 16 kHz mono.
    pub const OMI: WavSpec = WavSpec {
        sample_rate: 16_000,
        channels: 1,
    };

    /// Bytes per frame (one sample of every channel): `2 × channels`, if it fits a `u16`.
    pub fn block_align(&self) -> Option<u16> {
        self.channels.checked_mul(2)
    }

    /// Bytes per second: `sample_rate × block_align`, if it fits a `u32`.
    pub fn byte_rate(&self) -> Option<u32> {
        self.sample_rate.checked_mul(u32::from(self.block_align()?))
    }

    /// The canonical 44-byte header for `data_len` bytes of samples; see [`wav_header`].
    pub fn header(&self, data_len: u32) -> Result<[u8; WAV_HEADER_LEN], WavError> {
        let (sample_rate, channels) = (self.sample_rate, self.channels);
        if sample_rate == 0 || channels == 0 {
            return Err(WavError::InvalidSpec {
                sample_rate,
                channels,
            });
        }
        let overflow = WavError::SpecOverflow {
            sample_rate,
            channels,
        };
        let block_align = self.block_align().ok_or(overflow.clone())?;
        let byte_rate = self.byte_rate().ok_or(overflow)?;
        let riff_len = data_len
            .checked_add(36)
            .ok_or(WavError::DataTooLong { data_len })?;
        let mut header = [0u8; WAV_HEADER_LEN];
        let fields: [&[u8]; 13] = [
            b"RIFF",
            &riff_len.to_le_bytes(),
            b"WAVE",
            b"fmt ",
            &16u32.to_le_bytes(),
            &FORMAT_PCM.to_le_bytes(),
            &channels.to_le_bytes(),
            &sample_rate.to_le_bytes(),
            &byte_rate.to_le_bytes(),
            &block_align.to_le_bytes(),
            &WAV_BITS_PER_SAMPLE.to_le_bytes(),
            b"data",
            &data_len.to_le_bytes(),
        ];
        let mut at = 0;
        for field in fields {
            // The fields add up to exactly 44 bytes, so every slot exists.
            if let Some(slot) = header.get_mut(at..at + field.len()) {
                slot.copy_from_slice(field);
            }
            at += field.len();
        }
        Ok(header)
    }
}

/// The canonical 44-byte PCM16 WAV header, byte for byte what Python's `wave` module writes:
/// `RIFF`, `36 + data_len`, `WAVE`, a 16-byte `fmt ` chunk (format 1, `channels`,
/// `sample_rate`, byte rate `sample_rate × 2 × channels`, block align `2 × channels`, 16 bits),
/// then the `data` chunk header with `data_len`.
///
/// Fails for zero channels or rate, for a spec whose byte rate overflows `u32`, and for a
/// `data_len` above `u32::MAX - 36`.
///
/// ```
/// let header = chunk_format::wav::wav_header(320_000, 16_000, 1)?;
/// assert_eq!(&header[..4], b"RIFF");
/// assert_eq!(&header[40..], &320_000u32.to_le_bytes());
/// # Ok::<(), chunk_format::wav::WavError>(())
/// ```
pub fn wav_header(
    data_len: u32,
    sample_rate: u32,
    channels: u16,
) -> Result<[u8; WAV_HEADER_LEN], WavError> {
    WavSpec {
        sample_rate,
        channels,
    }
    .header(data_len)
}

/// What [`parse_wav_pcm16`] found: the format and where the samples are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WavInfo {
    /// Frames per second.
    pub sample_rate: u32,
    /// Interleaved channels.
    pub channels: u16,
    /// Bits per sample (always 16).
    pub bits: u16,
    /// Byte offset of the first sample.
    pub data_offset: usize,
    /// Length of the sample data in bytes.
    pub data_len: usize,
}

impl WavInfo {
    /// The format as a [`WavSpec`].
    pub fn spec(&self) -> WavSpec {
        WavSpec {
            sample_rate: self.sample_rate,
            channels: self.channels,
        }
    }

    /// The byte range of the sample data in the parsed input.
    pub fn data_range(&self) -> Range<usize> {
        self.data_offset..self.data_offset + self.data_len
    }

    /// Whole frames in the data (a partial trailing frame is not counted).
    pub fn frame_count(&self) -> usize {
        self.data_len / (2 * usize::from(self.channels.max(1)))
    }
}

/// Reads a RIFF/WAVE file's `fmt ` and `data` chunks and checks the samples are 16-bit PCM.
///
/// Accepts format tag 1 (PCM) and `WAVE_FORMAT_EXTENSIBLE` with the PCM sub-format. Chunks other
/// than `fmt ` and `data` (`LIST`, `fact`, `JUNK`, …) before `data` are skipped; odd-sized chunks
/// are followed by one pad byte (a missing final pad byte is tolerated). The RIFF size field is
/// not trusted: chunks are walked within the input. A `data` size of `0xFFFFFFFF` (streaming
/// writers that could not seek back) means "to the end of the input"; any other size must fit in
/// the input. Parsing stops at the `data` chunk; whatever follows it is ignored. The byte-rate
/// field is not checked (readers do not need it); the block align must be `2 × channels`.
///
/// ```
/// use chunk_format::wav::{parse_wav_pcm16, wav_header};
///
/// let mut file = wav_header(4, 16_000, 1)?.to_vec();
/// file.extend_from_slice(&[1, 0, 2, 0]);
/// let info = parse_wav_pcm16(&file)?;
/// assert_eq!((info.sample_rate, info.channels, info.data_offset, info.data_len), (16_000, 1, 44, 4));
/// assert_eq!(&file[info.data_range()], &[1, 0, 2, 0]);
/// # Ok::<(), chunk_format::wav::WavError>(())
/// ```
pub fn parse_wav_pcm16(bytes: &[u8]) -> Result<WavInfo, WavError> {
    let Some((preamble, _)) = bytes.split_first_chunk::<12>() else {
        return Err(WavError::TooShort { len: bytes.len() });
    };
    if &preamble[..4] != b"RIFF" {
        return Err(WavError::NotRiff {
            found: fourcc(&preamble[..4]),
        });
    }
    if &preamble[8..] != b"WAVE" {
        return Err(WavError::NotWave {
            found: fourcc(&preamble[8..]),
        });
    }
    let mut offset = 12;
    let mut format: Option<Fmt> = None;
    loop {
        let rest = bytes.get(offset..).unwrap_or_default();
        if rest.is_empty() {
            return Err(if format.is_none() {
                WavError::MissingFmt
            } else {
                WavError::MissingData
            });
        }
        let Some((header, after)) = rest.split_first_chunk::<8>() else {
            return Err(WavError::TruncatedChunkHeader {
                offset,
                remaining: rest.len(),
            });
        };
        let (id, size) = header.split_at(4);
        let declared = u32::from_le_bytes([size[0], size[1], size[2], size[3]]);
        let body_offset = offset + 8;
        if id == b"data" {
            let Some(format) = format else {
                return Err(WavError::DataBeforeFmt { offset });
            };
            let data_len = if declared == DATA_LEN_UNKNOWN {
                after.len()
            } else if declared as usize <= after.len() {
                declared as usize
            } else {
                return Err(WavError::ChunkPastEnd {
                    id: fourcc(id),
                    offset,
                    declared,
                    available: after.len(),
                });
            };
            return Ok(WavInfo {
                sample_rate: format.sample_rate,
                channels: format.channels,
                bits: WAV_BITS_PER_SAMPLE,
                data_offset: body_offset,
                data_len,
            });
        }
        let Some(body) = after.get(..declared as usize) else {
            return Err(WavError::ChunkPastEnd {
                id: fourcc(id),
                offset,
                declared,
                available: after.len(),
            });
        };
        if id == b"fmt " {
            if format.is_some() {
                return Err(WavError::DuplicateFmt { offset });
            }
            format = Some(parse_fmt(body, offset)?);
        }
        // Advance past the body and its pad byte; at least 8 bytes per iteration.
        offset = body_offset + body.len() + body.len() % 2;
    }
}

/// The parts of a `fmt ` chunk a reader needs.
#[derive(Clone, Copy)]
struct Fmt {
    sample_rate: u32,
    channels: u16,
}

fn parse_fmt(body: &[u8], offset: usize) -> Result<Fmt, WavError> {
    let Some((fields, extension)) = body.split_first_chunk::<16>() else {
        return Err(WavError::FmtTooShort {
            offset,
            len: body.len() as u32,
        });
    };
    let u16_at = |at: usize| u16::from_le_bytes([fields[at], fields[at + 1]]);
    let u32_at = |at: usize| {
        u32::from_le_bytes([fields[at], fields[at + 1], fields[at + 2], fields[at + 3]])
    };
    let tag = u16_at(0);
    let channels = u16_at(2);
    let sample_rate = u32_at(4);
    let block_align = u16_at(12);
    let mut bits = u16_at(14);
    match tag {
        FORMAT_PCM => {}
        FORMAT_EXTENSIBLE => {
            // cbSize(2) validBits(2) channelMask(4) subFormat(16)
            let sub_format = extension.get(8..24);
            if extension.len() < 24 || sub_format != Some(&SUBTYPE_PCM[..]) {
                return Err(WavError::NotPcm { offset, tag });
            }
            let valid_bits = u16::from_le_bytes([extension[2], extension[3]]);
            if bits != WAV_BITS_PER_SAMPLE {
                return Err(WavError::UnsupportedBits { offset, bits });
            }
            bits = valid_bits;
        }
        _ => return Err(WavError::NotPcm { offset, tag }),
    }
    if bits != WAV_BITS_PER_SAMPLE {
        return Err(WavError::UnsupportedBits { offset, bits });
    }
    if channels == 0 || sample_rate == 0 || Some(block_align) != channels.checked_mul(2) {
        return Err(WavError::BadFmt {
            offset,
            sample_rate,
            channels,
            block_align,
        });
    }
    Ok(Fmt {
        sample_rate,
        channels,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Produced once with CPython 3.11.7:
    /// `w = wave.open(b, "wb"); w.setnchannels(1); w.setsampwidth(2); w.setframerate(16000);
    /// w.writeframes(b"\0" * 320000); w.close()` and `b.getvalue()[:44].hex()`.
    const PYTHON_16K_MONO_320000: &str =
        "5249464624e2040057415645666d74201000000001000100803e0000007d0000020010006461746100e20400";
    /// Same, with 2 channels, 48000 Hz and 1000 data bytes.
    const PYTHON_48K_STEREO_1000: &str =
        "524946460c04000057415645666d7420100000000100020080bb000000ee02000400100064617461e8030000";

    fn unhex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn header_matches_python_wave() {
        assert_eq!(
            wav_header(320_000, 16_000, 1).unwrap().to_vec(),
            unhex(PYTHON_16K_MONO_320000)
        );
        assert_eq!(
            wav_header(1000, 48_000, 2).unwrap().to_vec(),
            unhex(PYTHON_48K_STEREO_1000)
        );
        assert_eq!(
            WavSpec::OMI.header(320_000).unwrap(),
            wav_header(320_000, 16_000, 1).unwrap()
        );
    }

    #[test]
    fn header_rejects_impossible_specs() {
        assert!(matches!(
            wav_header(0, 0, 1),
            Err(WavError::InvalidSpec { .. })
        ));
        assert!(matches!(
            wav_header(0, 16_000, 0),
            Err(WavError::InvalidSpec { .. })
        ));
        assert!(matches!(
            wav_header(0, 16_000, 40_000),
            Err(WavError::SpecOverflow { .. })
        ));
        assert!(matches!(
            wav_header(0, u32::MAX, 1),
            Err(WavError::SpecOverflow { .. })
        ));
        assert_eq!(
            wav_header(u32::MAX - 35, 16_000, 1),
            Err(WavError::DataTooLong {
                data_len: u32::MAX - 35
            })
        );
        assert!(wav_header(u32::MAX - 36, 16_000, 1).is_ok());
    }

    /// A WAV with extra chunks: `fmt `, an odd-sized `LIST` (plus pad), then `data`.
    fn with_list_chunk(fmt: &[u8], data: &[u8]) -> Vec<u8> {
        let mut out = b"RIFF\0\0\0\0WAVE".to_vec();
        out.extend_from_slice(b"fmt ");
        out.extend_from_slice(&(fmt.len() as u32).to_le_bytes());
        out.extend_from_slice(fmt);
        out.extend_from_slice(b"LIST\x03\0\0\0abc\0");
        out.extend_from_slice(b"data");
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend_from_slice(data);
        out
    }

    fn pcm_fmt(channels: u16, rate: u32, block_align: u16, bits: u16) -> Vec<u8> {
        let mut fmt = FORMAT_PCM.to_le_bytes().to_vec();
        fmt.extend_from_slice(&channels.to_le_bytes());
        fmt.extend_from_slice(&rate.to_le_bytes());
        fmt.extend_from_slice(&(rate * u32::from(block_align)).to_le_bytes());
        fmt.extend_from_slice(&block_align.to_le_bytes());
        fmt.extend_from_slice(&bits.to_le_bytes());
        fmt
    }

    #[test]
    fn skips_other_chunks_and_pads() {
        let file = with_list_chunk(&pcm_fmt(2, 44_100, 4, 16), &[1, 2, 3, 4, 5, 6, 7, 8]);
        let info = parse_wav_pcm16(&file).unwrap();
        assert_eq!(
            info.spec(),
            WavSpec {
                sample_rate: 44_100,
                channels: 2
            }
        );
        assert_eq!(info.data_offset, 12 + 8 + 16 + 8 + 4 + 8);
        assert_eq!(&file[info.data_range()], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(info.frame_count(), 2);
    }

    #[test]
    fn extensible_pcm_is_accepted() {
        let mut fmt = pcm_fmt(1, 16_000, 2, 16);
        fmt[..2].copy_from_slice(&FORMAT_EXTENSIBLE.to_le_bytes());
        fmt.extend_from_slice(&22u16.to_le_bytes());
        fmt.extend_from_slice(&16u16.to_le_bytes());
        fmt.extend_from_slice(&4u32.to_le_bytes());
        fmt.extend_from_slice(&SUBTYPE_PCM);
        let info = parse_wav_pcm16(&with_list_chunk(&fmt, &[0; 4])).unwrap();
        assert_eq!(
            (info.sample_rate, info.bits, info.data_len),
            (16_000, 16, 4)
        );
        // An extensible float sub-format is not PCM.
        let mut float = fmt.clone();
        float[24] = 3;
        assert!(matches!(
            parse_wav_pcm16(&with_list_chunk(&float, &[0; 4])),
            Err(WavError::NotPcm { tag: 0xfffe, .. })
        ));
    }

    #[test]
    fn unknown_data_length_runs_to_the_end() {
        let mut file = wav_header(0, 16_000, 1).unwrap().to_vec();
        file[40..44].copy_from_slice(&u32::MAX.to_le_bytes());
        file.extend_from_slice(&[9; 6]);
        assert_eq!(parse_wav_pcm16(&file).unwrap().data_len, 6);
    }

    #[test]
    fn rejects_malformed_files() {
        let good = {
            let mut f = wav_header(4, 16_000, 1).unwrap().to_vec();
            f.extend_from_slice(&[0; 4]);
            f
        };
        let mut cases: Vec<(Vec<u8>, WavError)> = vec![
            (good[..11].to_vec(), WavError::TooShort { len: 11 }),
            (
                b"RIFX\0\0\0\0WAVE".to_vec(),
                WavError::NotRiff {
                    found: "RIFX".into(),
                },
            ),
            (
                b"RIFF\0\0\0\0AVI ".to_vec(),
                WavError::NotWave {
                    found: "AVI ".into(),
                },
            ),
            (b"RIFF\0\0\0\0WAVE".to_vec(), WavError::MissingFmt),
            (good[..36].to_vec(), WavError::MissingData),
            (
                good[..40].to_vec(),
                WavError::TruncatedChunkHeader {
                    offset: 36,
                    remaining: 4,
                },
            ),
            (
                good[..46].to_vec(),
                WavError::ChunkPastEnd {
                    id: "data".into(),
                    offset: 36,
                    declared: 4,
                    available: 2,
                },
            ),
            (
                with_list_chunk(&pcm_fmt(1, 16_000, 2, 16)[..14], &[]),
                WavError::FmtTooShort {
                    offset: 12,
                    len: 14,
                },
            ),
            (
                with_list_chunk(&pcm_fmt(1, 16_000, 1, 8), &[]),
                WavError::UnsupportedBits {
                    offset: 12,
                    bits: 8,
                },
            ),
            (
                with_list_chunk(&pcm_fmt(1, 16_000, 4, 16), &[]),
                WavError::BadFmt {
                    offset: 12,
                    sample_rate: 16_000,
                    channels: 1,
                    block_align: 4,
                },
            ),
            (
                with_list_chunk(&pcm_fmt(0, 16_000, 0, 16), &[]),
                WavError::BadFmt {
                    offset: 12,
                    sample_rate: 16_000,
                    channels: 0,
                    block_align: 0,
                },
            ),
        ];
        let mut float = pcm_fmt(1, 16_000, 2, 16);
        float[0] = 3;
        cases.push((
            with_list_chunk(&float, &[]),
            WavError::NotPcm { offset: 12, tag: 3 },
        ));
        let mut data_first = b"RIFF\0\0\0\0WAVEdata\0\0\0\0".to_vec();
        data_first.extend_from_slice(&good[12..36]);
        cases.push((data_first, WavError::DataBeforeFmt { offset: 12 }));
        let mut two_fmts = good[..36].to_vec();
        two_fmts.extend_from_slice(&good[12..]);
        cases.push((two_fmts, WavError::DuplicateFmt { offset: 36 }));
        let mut list_past_end = good[..36].to_vec();
        list_past_end.extend_from_slice(b"LIST\xff\0\0\0abc");
        cases.push((
            list_past_end,
            WavError::ChunkPastEnd {
                id: "LIST".into(),
                offset: 36,
                declared: 255,
                available: 3,
            },
        ));
        for (input, expected) in cases {
            assert_eq!(parse_wav_pcm16(&input), Err(expected.clone()), "{expected}");
        }
        assert!(parse_wav_pcm16(&good).is_ok());
    }
}
