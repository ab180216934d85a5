//! Omi's length-prefixed frames: `be_u32 L || body[L]`, back to back.
//!
//! Omi seals every encrypted chunk as one frame whose body is `nonce[12] || ciphertext ||
//! tag[16]` (compat doc §2.2); an `.enc`-family object is one or more frames. This module only
//! knows the framing: [`encode_frame`] writes one, [`Frames`] walks an object's bytes and yields
//! each body without copying. The iterator is total: it yields bodies until the input is used
//! up, or one [`FrameError`] (after which it stops), never panics and never allocates.

/// The default largest frame body [`Frames`] accepts: 64 MiB, far above a 10-minute PCM batch
/// chunk (19.2 MB) and well below anything that could exhaust memory.
pub const DEFAULT_MAX_FRAME_BODY: u32 = 64 * 1024 * 1024;

/// Length of the big-endian length prefix.
pub const FRAME_PREFIX_LEN: usize = 4;

/// Why the bytes at some offset are not a well-formed frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Fewer than four bytes remain where a length prefix should start.
    #[error("frame {index} at offset {offset}: truncated length prefix ({remaining} of 4 bytes)")]
    TruncatedLength {
        /// Index of the frame (0-based).
        index: usize,
        /// Byte offset of the frame.
        offset: usize,
        /// Bytes left in the input.
        remaining: usize,
    },
    /// The declared body runs past the end of the input.
    #[error(
        "frame {index} at offset {offset}: declares {declared} body bytes but only {available} remain"
    )]
    LengthPastEnd {
        /// Index of the frame (0-based).
        index: usize,
        /// Byte offset of the frame.
        offset: usize,
        /// The declared body length.
        declared: u32,
        /// Bytes available after the prefix.
        available: usize,
    },
    /// The declared body length is zero (no Omi writer produces one).
    #[error("frame {index} at offset {offset}: zero-length body")]
    ZeroLength {
        /// Index of the frame (0-based).
        index: usize,
        /// Byte offset of the frame.
        offset: usize,
    },
    /// The declared body length is above the configured maximum.
    #[error("frame {index} at offset {offset}: body of {declared} bytes exceeds the maximum {max}")]
    TooLarge {
        /// Index of the frame (0-based).
        index: usize,
        /// Byte offset of the frame.
        offset: usize,
        /// The declared body length.
        declared: u32,
        /// The configured maximum.
        max: u32,
    },
    /// A body to encode is longer than a `u32` length can say.
    #[error("frame body of {len} bytes does not fit a u32 length prefix")]
    BodyTooLong {
        /// The body length.
        len: usize,
    },
}

/// The 4-byte prefix for a body of `body_len` bytes, for writers that stream the body.
pub fn frame_prefix(body_len: usize) -> Result<[u8; FRAME_PREFIX_LEN], FrameError> {
    let len = u32::try_from(body_len).map_err(|_| FrameError::BodyTooLong { len: body_len })?;
    Ok(len.to_be_bytes())
}

/// Appends one frame (`be_u32 len || body`) to `out`.
///
/// ```
/// let mut out = Vec::new();
/// chunk_format::frames::encode_frame(b"abc", &mut out)?;
/// assert_eq!(out, [0, 0, 0, 3, b'a', b'b', b'c']);
/// # Ok::<(), chunk_format::frames::FrameError>(())
/// ```
pub fn encode_frame(body: &[u8], out: &mut Vec<u8>) -> Result<(), FrameError> {
    out.extend_from_slice(&frame_prefix(body.len())?);
    out.extend_from_slice(body);
    Ok(())
}

/// One frame found by [`Frames`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    /// Index of the frame in the object (0-based).
    pub index: usize,
    /// Byte offset of the frame's length prefix in the object.
    pub offset: usize,
    /// The body (for Omi: `nonce || ciphertext || tag`).
    pub body: &'a [u8],
}

impl Frame<'_> {
    /// Bytes the frame occupies in the object: prefix plus body.
    pub fn encoded_len(&self) -> usize {
        FRAME_PREFIX_LEN + self.body.len()
    }
}

/// Iterator over the frames of an object's bytes.
///
/// Yields `Ok(frame)` for each well-formed frame, then ends; on malformed input it yields one
/// `Err` and then ends. An empty input yields nothing.
///
/// ```
/// use chunk_format::frames::{Frames, encode_frame};
///
/// let mut object = Vec::new();
/// encode_frame(b"first", &mut object)?;
/// encode_frame(b"second", &mut object)?;
/// let bodies: Vec<&[u8]> = Frames::new(&object).map(|f| f.map(|f| f.body)).collect::<Result<_, _>>()?;
/// assert_eq!(bodies, [&b"first"[..], &b"second"[..]]);
/// # Ok::<(), chunk_format::frames::FrameError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Frames<'a> {
    input: &'a [u8],
    offset: usize,
    index: usize,
    max_body: u32,
    failed: bool,
}

impl<'a> Frames<'a> {
    /// Walks `input` with the [`DEFAULT_MAX_FRAME_BODY`] limit.
    pub fn new(input: &'a [u8]) -> Frames<'a> {
        Frames::with_max_body(input, DEFAULT_MAX_FRAME_BODY)
    }

    /// Walks `input`, refusing frames whose body is longer than `max_body`.
    pub fn with_max_body(input: &'a [u8], max_body: u32) -> Frames<'a> {
        Frames {
            input,
            offset: 0,
            index: 0,
            max_body,
            failed: false,
        }
    }

    /// Byte offset of the next frame (equals the input length once all frames were read).
    pub fn offset(&self) -> usize {
        self.offset
    }

    fn next_frame(&mut self) -> Result<Frame<'a>, FrameError> {
        let (index, offset) = (self.index, self.offset);
        let rest = self.input.get(offset..).unwrap_or_default();
        let Some((prefix, after)) = rest.split_first_chunk::<FRAME_PREFIX_LEN>() else {
            return Err(FrameError::TruncatedLength {
                index,
                offset,
                remaining: rest.len(),
            });
        };
        let declared = u32::from_be_bytes(*prefix);
        if declared == 0 {
            return Err(FrameError::ZeroLength { index, offset });
        }
        if declared > self.max_body {
            return Err(FrameError::TooLarge {
                index,
                offset,
                declared,
                max: self.max_body,
            });
        }
        let body = after
            .get(..declared as usize)
            .ok_or(FrameError::LengthPastEnd {
                index,
                offset,
                declared,
                available: after.len(),
            })?;
        self.offset = offset + FRAME_PREFIX_LEN + body.len();
        self.index += 1;
        Ok(Frame {
            index,
            offset,
            body,
        })
    }
}

impl<'a> Iterator for Frames<'a> {
    type Item = Result<Frame<'a>, FrameError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.offset >= self.input.len() {
            return None;
        }
        let item = self.next_frame();
        self.failed = item.is_err();
        Some(item)
    }
}

impl std::iter::FusedIterator for Frames<'_> {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_frames_and_reports_offsets() {
        let mut object = Vec::new();
        encode_frame(&[7; 10], &mut object).unwrap();
        encode_frame(&[8; 3], &mut object).unwrap();
        let frames: Vec<_> = Frames::new(&object).collect::<Result<_, _>>().unwrap();
        assert_eq!(frames.len(), 2);
        assert_eq!((frames[0].offset, frames[0].body), (0, &[7u8; 10][..]));
        assert_eq!((frames[1].offset, frames[1].index), (14, 1));
        assert_eq!(frames[1].encoded_len(), 7);
    }

    #[test]
    fn empty_input_has_no_frames() {
        assert_eq!(Frames::new(&[]).count(), 0);
    }

    #[test]
    fn malformed_inputs_give_one_error_then_stop() {
        let cases: [(&[u8], FrameError); 4] = [
            (
                &[0, 0, 1],
                FrameError::TruncatedLength {
                    index: 0,
                    offset: 0,
                    remaining: 3,
                },
            ),
            (
                &[0, 0, 0, 0],
                FrameError::ZeroLength {
                    index: 0,
                    offset: 0,
                },
            ),
            (
                &[0, 0, 0, 5, 1, 2],
                FrameError::LengthPastEnd {
                    index: 0,
                    offset: 0,
                    declared: 5,
                    available: 2,
                },
            ),
            (
                &[0, 0, 0, 1, 9, 0xff, 0xff, 0xff, 0xff],
                FrameError::TooLarge {
                    index: 1,
                    offset: 5,
                    declared: u32::MAX,
                    max: DEFAULT_MAX_FRAME_BODY,
                },
            ),
        ];
        for (input, expected) in cases {
            let items: Vec<_> = Frames::new(input).collect();
            assert_eq!(items.last(), Some(&Err(expected)), "{input:?}");
            assert_eq!(items.iter().filter(|i| i.is_err()).count(), 1);
        }
    }

    #[test]
    fn custom_maximum() {
        let mut object = Vec::new();
        encode_frame(&[1; 100], &mut object).unwrap();
        assert!(matches!(
            Frames::with_max_body(&object, 99).next(),
            Some(Err(FrameError::TooLarge { declared: 100, .. }))
        ));
        assert!(matches!(
            Frames::with_max_body(&object, 100).next(),
            Some(Ok(_))
        ));
    }
}
