//! Loader for the synthetic speech fixture `tests/fixtures/speech/speech-60s.wav`.
//!
//! The WAV file is parsed by walking its RIFF chunks: the `fmt ` chunk gives the sample format and
//! the `data` chunk the PCM. Other chunks (e.g. `LIST`) are skipped. Malformed input gives a
//! [`WavError`] with the byte offset of the problem.

use std::path::PathBuf;

/// Format tag of integer PCM in a `fmt ` chunk.
pub const WAVE_FORMAT_PCM: u16 = 1;
/// Format tag of `WAVE_FORMAT_EXTENSIBLE` (the real tag is in the sub-format GUID).
pub const WAVE_FORMAT_EXTENSIBLE: u16 = 0xFFFE;

/// The sample format from a WAV `fmt ` chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WavFormat {
    /// Format tag after resolving `WAVE_FORMAT_EXTENSIBLE` (1 = integer PCM).
    pub format_tag: u16,
    /// Number of interleaved channels.
    pub channels: u16,
    /// Frames per second.
    pub sample_rate: u32,
    /// Bytes per frame (all channels).
    pub block_align: u16,
    /// Bits per sample.
    pub bits_per_sample: u16,
}

/// A parsed WAV file: its format and the bytes of its `data` chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wav<'a> {
    /// The `fmt ` chunk.
    pub format: WavFormat,
    /// The `data` chunk payload.
    pub data: &'a [u8],
}

impl Wav<'_> {
    /// Returns the duration in seconds (`data` frames / sample rate).
    pub fn duration_secs(&self) -> f64 {
        let frames = self.data.len() / usize::from(self.format.block_align.max(1));
        frames as f64 / f64::from(self.format.sample_rate.max(1))
    }
}

/// What is wrong with a WAV file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WavError {
    /// The file does not start with `RIFF....WAVE`.
    #[error("not a RIFF/WAVE file (bad header at offset 0)")]
    NotRiffWave,
    /// A chunk header or body runs past the end of the file (or the RIFF size).
    #[error("chunk {id:?} at offset {offset} needs {needed} bytes but only {available} remain")]
    Truncated {
        /// Chunk id (lossy ASCII), or `"????"` if the header itself is cut.
        id: String,
        /// Offset of the chunk header.
        offset: usize,
        /// Bytes the chunk claims (header + body).
        needed: u64,
        /// Bytes left in the file.
        available: usize,
    },
    /// The `fmt ` chunk is too short or inconsistent.
    #[error("bad fmt chunk at offset {offset}: {reason}")]
    BadFormat {
        /// Offset of the `fmt ` chunk header.
        offset: usize,
        /// What was wrong.
        reason: &'static str,
    },
    /// The file has no `fmt ` chunk before its `data` chunk.
    #[error("data chunk at offset {offset} comes before any fmt chunk")]
    DataBeforeFormat {
        /// Offset of the `data` chunk header.
        offset: usize,
    },
    /// The file has no `data` chunk.
    #[error("no data chunk in the file")]
    NoData,
    /// The `data` length is not a whole number of frames.
    #[error(
        "data chunk at offset {offset} holds {len} bytes, not a multiple of block_align {block_align}"
    )]
    PartialFrame {
        /// Offset of the `data` chunk header.
        offset: usize,
        /// Data length.
        len: usize,
        /// Bytes per frame.
        block_align: u16,
    },
}

/// Errors of [`pcm_60s`].
#[derive(Debug, thiserror::Error)]
pub enum SpeechError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The WAV path.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a valid WAV.
    #[error("{path}: {source}")]
    Wav {
        /// The WAV path.
        path: PathBuf,
        /// What was wrong.
        #[source]
        source: WavError,
    },
    /// The file is valid but not 16 kHz mono 16-bit PCM.
    #[error("{path}: expected 16 kHz mono 16-bit PCM, found {format:?}")]
    UnexpectedFormat {
        /// The WAV path.
        path: PathBuf,
        /// The format found.
        format: WavFormat,
    },
}

fn le_u16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn le_u32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn parse_fmt(body: &[u8], offset: usize) -> Result<WavFormat, WavError> {
    let bad = |reason| WavError::BadFormat { offset, reason };
    let field16 = |at| le_u16(body, at).ok_or(bad("shorter than 16 bytes"));
    let mut format_tag = field16(0)?;
    let channels = field16(2)?;
    let sample_rate = le_u32(body, 4).ok_or(bad("shorter than 16 bytes"))?;
    let block_align = field16(12)?;
    let bits_per_sample = field16(14)?;
    if format_tag == WAVE_FORMAT_EXTENSIBLE {
        // cbSize(2) validBits(2) channelMask(4) then the sub-format GUID whose first two bytes
        // are the real format tag.
        format_tag = le_u16(body, 24).ok_or(bad("extensible fmt shorter than 40 bytes"))?;
    }
    if channels == 0 || sample_rate == 0 || block_align == 0 {
        return Err(bad("zero channels, sample rate or block_align"));
    }
    if u32::from(block_align) * 8 != u32::from(channels) * u32::from(bits_per_sample) {
        return Err(bad(
            "block_align does not equal channels * bits_per_sample / 8",
        ));
    }
    Ok(WavFormat {
        format_tag,
        channels,
        sample_rate,
        block_align,
        bits_per_sample,
    })
}

/// Parses a RIFF/WAVE file: finds the `fmt ` and `data` chunks, skipping any others.
///
/// Chunks are walked by their declared sizes (padded to even); each step advances by at least 8
/// bytes, and every size is checked against the bytes that remain, so the parser is total.
pub fn parse_wav(bytes: &[u8]) -> Result<Wav<'_>, WavError> {
    if bytes.get(0..4) != Some(b"RIFF") || bytes.get(8..12) != Some(b"WAVE") {
        return Err(WavError::NotRiffWave);
    }
    let riff_size = le_u32(bytes, 4).ok_or(WavError::NotRiffWave)?;
    // The RIFF size counts from offset 8; never look beyond it or beyond the file.
    let end = usize::try_from(u64::from(riff_size) + 8)
        .map_or(bytes.len(), |declared| declared.min(bytes.len()));
    let mut format = None;
    let mut offset = 12;
    while offset < end {
        let available = end - offset;
        let header = bytes.get(offset..offset + 8).filter(|_| available >= 8);
        let Some(header) = header else {
            return Err(WavError::Truncated {
                id: "????".into(),
                offset,
                needed: 8,
                available,
            });
        };
        let id = &header[0..4];
        let size = le_u32(header, 4).unwrap_or(0);
        let needed = 8 + u64::from(size);
        let body_end = usize::try_from(needed)
            .ok()
            .and_then(|n| offset.checked_add(n))
            .filter(|&e| e <= end)
            .ok_or_else(|| WavError::Truncated {
                id: String::from_utf8_lossy(id).into_owned(),
                offset,
                needed,
                available,
            })?;
        let body = &bytes[offset + 8..body_end];
        match id {
            b"fmt " => format = Some(parse_fmt(body, offset)?),
            b"data" => {
                let format: WavFormat = format.ok_or(WavError::DataBeforeFormat { offset })?;
                if !body.len().is_multiple_of(usize::from(format.block_align)) {
                    return Err(WavError::PartialFrame {
                        offset,
                        len: body.len(),
                        block_align: format.block_align,
                    });
                }
                return Ok(Wav { format, data: body });
            }
            _ => {}
        }
        // Chunks are padded to an even length; a missing pad byte at the very end is tolerated.
        offset = body_end + (body_end - offset) % 2;
    }
    Err(WavError::NoData)
}

/// Returns the path of the committed 60 s speech WAV.
pub fn speech_60s_path() -> PathBuf {
    crate::fixtures_dir().join("speech").join("speech-60s.wav")
}

/// Returns the PCM16LE mono 16 kHz samples (as bytes) of the committed ~60 s speech WAV.
pub fn pcm_60s() -> Result<Vec<u8>, SpeechError> {
    let path = speech_60s_path();
    let bytes = std::fs::read(&path).map_err(|source| SpeechError::Io {
        path: path.clone(),
        source,
    })?;
    let wav = parse_wav(&bytes).map_err(|source| SpeechError::Wav {
        path: path.clone(),
        source,
    })?;
    let expected = WavFormat {
        format_tag: WAVE_FORMAT_PCM,
        channels: 1,
        sample_rate: 16_000,
        block_align: 2,
        bits_per_sample: 16,
    };
    if wav.format != expected {
        return Err(SpeechError::UnexpectedFormat {
            path,
            format: wav.format,
        });
    }
    Ok(wav.data.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(id: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut out = id.to_vec();
        out.extend((body.len() as u32).to_le_bytes());
        out.extend(body);
        if body.len() % 2 == 1 {
            out.push(0);
        }
        out
    }

    fn fmt_body(tag: u16, channels: u16, rate: u32, bits: u16) -> Vec<u8> {
        let align = channels * bits / 8;
        let mut b = Vec::new();
        b.extend(tag.to_le_bytes());
        b.extend(channels.to_le_bytes());
        b.extend(rate.to_le_bytes());
        b.extend((rate * u32::from(align)).to_le_bytes());
        b.extend(align.to_le_bytes());
        b.extend(bits.to_le_bytes());
        b
    }

    fn riff(chunks: &[Vec<u8>]) -> Vec<u8> {
        let body: Vec<u8> = chunks.concat();
        let mut out = b"RIFF".to_vec();
        out.extend(((body.len() + 4) as u32).to_le_bytes());
        out.extend(b"WAVE");
        out.extend(body);
        out
    }

    #[test]
    fn finds_data_after_other_chunks() {
        let file = riff(&[
            chunk(b"fmt ", &fmt_body(1, 1, 16_000, 16)),
            chunk(b"LIST", b"odd"),
            chunk(b"data", &[1, 2, 3, 4]),
        ]);
        let wav = parse_wav(&file).expect("valid wav");
        assert_eq!(wav.data, &[1, 2, 3, 4]);
        assert_eq!(wav.format.sample_rate, 16_000);
        assert_eq!(wav.format.channels, 1);
        assert!((wav.duration_secs() - 2.0 / 16_000.0).abs() < 1e-12);
    }

    #[test]
    fn resolves_extensible_format_tag() {
        let mut body = fmt_body(WAVE_FORMAT_EXTENSIBLE, 1, 16_000, 16);
        body.extend(22u16.to_le_bytes()); // cbSize
        body.extend(16u16.to_le_bytes()); // valid bits
        body.extend(4u32.to_le_bytes()); // channel mask
        body.extend(1u16.to_le_bytes()); // GUID starts with the PCM tag
        body.extend([0u8; 14]);
        let file = riff(&[chunk(b"fmt ", &body), chunk(b"data", &[0, 0])]);
        assert_eq!(parse_wav(&file).expect("valid").format.format_tag, 1);
    }

    #[test]
    fn rejects_malformed_files() {
        let fmt = chunk(b"fmt ", &fmt_body(1, 1, 16_000, 16));
        assert_eq!(parse_wav(b"RIFX\0\0\0\0WAVE"), Err(WavError::NotRiffWave));
        assert_eq!(parse_wav(b"RIFF"), Err(WavError::NotRiffWave));
        assert_eq!(
            parse_wav(&riff(std::slice::from_ref(&fmt))),
            Err(WavError::NoData)
        );
        assert!(matches!(
            parse_wav(&riff(&[chunk(b"data", &[0, 0]), fmt.clone()])),
            Err(WavError::DataBeforeFormat { offset: 12 })
        ));
        assert!(matches!(
            parse_wav(&riff(&[fmt.clone(), chunk(b"data", &[0, 0, 0])])),
            Err(WavError::PartialFrame { len: 3, .. })
        ));
        assert!(matches!(
            parse_wav(&riff(&[chunk(b"fmt ", &[1, 0, 1, 0])])),
            Err(WavError::BadFormat { offset: 12, .. })
        ));
        // A data chunk that claims more bytes than the file has.
        let mut lying = riff(&[fmt.clone(), chunk(b"data", &[0, 0])]);
        let data_size_at = 12 + fmt.len() + 4;
        lying[data_size_at..data_size_at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            parse_wav(&lying),
            Err(WavError::Truncated { ref id, .. }) if id == "data"
        ));
        // A chunk header cut short.
        let mut cut = riff(&[fmt]);
        cut.extend(b"dat");
        let riff_len = (cut.len() - 8) as u32;
        cut[4..8].copy_from_slice(&riff_len.to_le_bytes());
        assert!(matches!(
            parse_wav(&cut),
            Err(WavError::Truncated { needed: 8, .. })
        ));
    }

    #[test]
    fn every_truncation_of_a_valid_file_is_handled() {
        let file = riff(&[
            chunk(b"fmt ", &fmt_body(1, 1, 16_000, 16)),
            chunk(b"data", &[1, 2, 3, 4]),
        ]);
        for cut in 0..file.len() {
            // Must return (never panic); only the full file has its data chunk.
            assert!(parse_wav(&file[..cut]).is_err(), "cut at {cut}");
        }
        assert!(parse_wav(&file).is_ok());
    }
}
