//! Omi's Opus container (compat doc §3.2): the payload of `.opus` objects and the plaintext of
//! `.opus.enc` frames. It is not Ogg; it is a tiny length-prefixed packet list:
//!
//! ```text
//! le_u32 packet_count
//! le_u32 original_pcm_len      ; bytes of PCM16LE fed to the encoder
//! packet_count × ( le_u16 pkt_len || pkt_len bytes of one Opus packet )
//! [trailing bytes]             ; ignored by Omi's reader; reported here
//! ```
//!
//! This module only knows the framing. [`OpusContainer::parse`] validates every packet up front
//! (so [`OpusContainer::packets`] is infallible) without copying or allocating, and
//! [`build_opus_container`] writes one. Encoding and decoding Opus is not this crate's job.

/// Sample rate Omi's encoder and decoder use, whatever the connection's rate: 16 kHz.
pub const OMI_OPUS_SAMPLE_RATE: u32 = 16_000;

/// Samples per Opus frame in Omi's container: 20 ms at 16 kHz.
pub const OMI_OPUS_FRAME_SAMPLES: usize = 320;

/// PCM16LE mono bytes per Opus frame (the encoder zero-pads the last partial frame to this).
pub const OMI_OPUS_FRAME_BYTES: usize = 640;

/// Length of the container header: `le_u32 packet_count || le_u32 original_pcm_len`.
pub const OMI_OPUS_HEADER_LEN: usize = 8;

/// Length of each packet's little-endian length prefix.
pub const OMI_OPUS_PACKET_PREFIX_LEN: usize = 2;

/// The longest packet the container can hold: a `u16` length.
pub const OMI_OPUS_MAX_PACKET_LEN: usize = u16::MAX as usize;

/// Why bytes are not an Omi Opus container, or why one cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpusContainerError {
    /// Fewer than [`OMI_OPUS_HEADER_LEN`] bytes: there is no header (Omi: "too short").
    #[error("Opus container of {len} bytes is shorter than its 8-byte header")]
    TooShort {
        /// Length of the input.
        len: usize,
    },
    /// A packet's length prefix or body runs past the end of the input (Omi: "Truncated").
    #[error(
        "Opus container truncated: packet {packet_index} at offset {offset} runs past the end of the input"
    )]
    Truncated {
        /// Index of the packet that is cut off (0-based).
        packet_index: u32,
        /// Byte offset of that packet's length prefix.
        offset: usize,
    },
    /// A packet to write is longer than a `u16` length can say.
    #[error("Opus packet {packet_index} is {len} bytes; the container allows at most 65535")]
    PacketTooLong {
        /// Index of the packet (0-based).
        packet_index: usize,
        /// Its length.
        len: usize,
    },
    /// More packets than a `u32` count can say.
    #[error("more than {max} Opus packets do not fit the container's u32 count", max = u32::MAX)]
    TooManyPackets,
}

/// A parsed Omi Opus container, borrowing the input bytes.
///
/// Every packet was bounds-checked by [`OpusContainer::parse`], so iterating is infallible.
///
/// ```
/// use chunk_format::omi_opus::{OpusContainer, build_opus_container};
///
/// let mut bytes = Vec::new();
/// build_opus_container(1280, [&b"\x08\x01"[..], &b"\x08\x02\x03"[..]], &mut bytes)?;
/// assert_eq!(bytes, [2, 0, 0, 0, 0x00, 0x05, 0, 0, 2, 0, 8, 1, 3, 0, 8, 2, 3]);
///
/// let container = OpusContainer::parse(&bytes)?;
/// assert_eq!((container.packet_count(), container.original_pcm_len()), (2, 1280));
/// assert_eq!(container.packets().collect::<Vec<_>>(), [&[8, 1][..], &[8, 2, 3][..]]);
/// assert_eq!(container.trailing_bytes(), 0);
/// # Ok::<(), chunk_format::omi_opus::OpusContainerError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpusContainer<'a> {
    original_pcm_len: u32,
    packet_count: u32,
    /// The packet list: exactly `packet_count` validated `len || body` records.
    packet_bytes: &'a [u8],
    trailing_bytes: usize,
}

impl<'a> OpusContainer<'a> {
    /// Parses and validates a container: the header and every packet's bounds.
    ///
    /// Runs in time linear in the input and allocates nothing, whatever `packet_count` the header
    /// claims (each packet consumes at least its 2-byte prefix, so a huge count on a short input
    /// fails at the first missing packet with [`OpusContainerError::Truncated`]). Bytes after the
    /// last packet are accepted, as Omi's reader does, and counted in
    /// [`OpusContainer::trailing_bytes`].
    pub fn parse(bytes: &'a [u8]) -> Result<OpusContainer<'a>, OpusContainerError> {
        let Some((header, mut rest)) = bytes.split_first_chunk::<OMI_OPUS_HEADER_LEN>() else {
            return Err(OpusContainerError::TooShort { len: bytes.len() });
        };
        let (count, original) = header.split_at(4);
        let packet_count = u32::from_le_bytes([count[0], count[1], count[2], count[3]]);
        let original_pcm_len =
            u32::from_le_bytes([original[0], original[1], original[2], original[3]]);
        let mut offset = OMI_OPUS_HEADER_LEN;
        for packet_index in 0..packet_count {
            let truncated = OpusContainerError::Truncated {
                packet_index,
                offset,
            };
            let (prefix, after) = rest
                .split_first_chunk::<OMI_OPUS_PACKET_PREFIX_LEN>()
                .ok_or(truncated.clone())?;
            let len = usize::from(u16::from_le_bytes(*prefix));
            let (_body, after) = after.split_at_checked(len).ok_or(truncated)?;
            rest = after;
            offset += OMI_OPUS_PACKET_PREFIX_LEN + len;
        }
        Ok(OpusContainer {
            original_pcm_len,
            packet_count,
            packet_bytes: bytes.get(OMI_OPUS_HEADER_LEN..offset).unwrap_or_default(),
            trailing_bytes: rest.len(),
        })
    }

    /// Bytes of PCM the encoder was given (the decoder cuts its output back to this length).
    pub fn original_pcm_len(&self) -> u32 {
        self.original_pcm_len
    }

    /// Number of packets (Omi: one per 20 ms frame, 250 per 5 s chunk).
    pub fn packet_count(&self) -> u32 {
        self.packet_count
    }

    /// The packets, in order, borrowed from the input. Infallible: `parse` checked them all.
    pub fn packets(&self) -> Packets<'a> {
        Packets {
            rest: self.packet_bytes,
            remaining: self.packet_count,
        }
    }

    /// Length of the container itself: header plus packets, without trailing bytes.
    pub fn container_len(&self) -> usize {
        OMI_OPUS_HEADER_LEN + self.packet_bytes.len()
    }

    /// Bytes after the last packet, which Omi's reader ignores.
    pub fn trailing_bytes(&self) -> usize {
        self.trailing_bytes
    }

    /// The PCM length Omi's decoder produces: `packet_count × 640` bytes, cut back to
    /// `original_pcm_len` when that is non-zero and shorter (compat doc §3.2).
    pub fn decoded_pcm_len(&self) -> u64 {
        let decoded = u64::from(self.packet_count) * OMI_OPUS_FRAME_BYTES as u64;
        let original = u64::from(self.original_pcm_len);
        if original > 0 && original < decoded {
            original
        } else {
            decoded
        }
    }
}

/// Iterator over the packets of an [`OpusContainer`]; see [`OpusContainer::packets`].
#[derive(Debug, Clone)]
pub struct Packets<'a> {
    rest: &'a [u8],
    remaining: u32,
}

impl<'a> Iterator for Packets<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.remaining == 0 {
            return None;
        }
        // `parse` validated exactly `packet_count` records, so these never fail; if they did,
        // the iterator would just end.
        let (prefix, after) = self
            .rest
            .split_first_chunk::<OMI_OPUS_PACKET_PREFIX_LEN>()?;
        let (body, after) = after.split_at_checked(usize::from(u16::from_le_bytes(*prefix)))?;
        self.rest = after;
        self.remaining -= 1;
        Some(body)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let remaining = self.remaining as usize;
        (remaining, Some(remaining))
    }
}

impl ExactSizeIterator for Packets<'_> {}

impl std::iter::FusedIterator for Packets<'_> {}

/// Appends a container holding `packets` to `out`.
///
/// `original_pcm_len` is the number of PCM bytes given to the encoder. On error `out` is left as
/// it was. Fails with [`OpusContainerError::PacketTooLong`] for a packet above 65535 bytes and
/// with [`OpusContainerError::TooManyPackets`] past `u32::MAX` packets. Zero-length packets are
/// written as given.
pub fn build_opus_container<'p>(
    original_pcm_len: u32,
    packets: impl IntoIterator<Item = &'p [u8]>,
    out: &mut Vec<u8>,
) -> Result<(), OpusContainerError> {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&original_pcm_len.to_le_bytes());
    let mut count: u32 = 0;
    for (packet_index, packet) in packets.into_iter().enumerate() {
        let written = u16::try_from(packet.len())
            .map_err(|_| OpusContainerError::PacketTooLong {
                packet_index,
                len: packet.len(),
            })
            .and_then(|len| {
                count = count
                    .checked_add(1)
                    .ok_or(OpusContainerError::TooManyPackets)?;
                Ok(len)
            });
        match written {
            Ok(len) => {
                out.extend_from_slice(&len.to_le_bytes());
                out.extend_from_slice(packet);
            }
            Err(error) => {
                out.truncate(start);
                return Err(error);
            }
        }
    }
    if let Some(slot) = out.get_mut(start..start + 4) {
        slot.copy_from_slice(&count.to_le_bytes());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_header_packets_and_trailing_bytes() {
        let bytes = [
            3, 0, 0, 0, // packet_count 3
            0x00, 0x71, 0x02, 0x00, // original_pcm_len 160000
            1, 0, 0xaa, // packet 0: [aa]
            0, 0, // packet 1: empty
            2, 0, 0xbb, 0xcc, // packet 2: [bb cc]
            0xde, 0xad, // trailing
        ];
        let container = OpusContainer::parse(&bytes).unwrap();
        assert_eq!(container.packet_count(), 3);
        assert_eq!(container.original_pcm_len(), 160_000);
        let packets: Vec<&[u8]> = container.packets().collect();
        assert_eq!(packets, [&[0xaa][..], &[][..], &[0xbb, 0xcc][..]]);
        assert_eq!(container.packets().len(), 3);
        assert_eq!(container.trailing_bytes(), 2);
        assert_eq!(container.container_len(), bytes.len() - 2);
    }

    #[test]
    fn empty_container_is_just_a_header() {
        let mut out = Vec::new();
        build_opus_container(0, [], &mut out).unwrap();
        assert_eq!(out, [0; 8]);
        let container = OpusContainer::parse(&out).unwrap();
        assert_eq!(container.packets().count(), 0);
        assert_eq!(container.decoded_pcm_len(), 0);
    }

    #[test]
    fn too_short_and_truncated() {
        for len in 0..OMI_OPUS_HEADER_LEN {
            assert_eq!(
                OpusContainer::parse(&[0; 8][..len]),
                Err(OpusContainerError::TooShort { len })
            );
        }
        // Missing length prefix of packet 1.
        assert_eq!(
            OpusContainer::parse(&[2, 0, 0, 0, 0, 0, 0, 0, 1, 0, 7, 9]),
            Err(OpusContainerError::Truncated {
                packet_index: 1,
                offset: 11
            })
        );
        // Body of packet 0 runs past the end.
        assert_eq!(
            OpusContainer::parse(&[1, 0, 0, 0, 0, 0, 0, 0, 5, 0, 1, 2]),
            Err(OpusContainerError::Truncated {
                packet_index: 0,
                offset: 8
            })
        );
    }

    #[test]
    fn huge_declared_count_fails_fast() {
        let mut bytes = vec![0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0];
        bytes.extend_from_slice(&[3, 0, 1, 2, 3, 0, 0, 1, 0, 9]); // 3 packets, 20 bytes total
        bytes.extend_from_slice(&[0, 0]);
        assert_eq!(bytes.len(), 20);
        assert_eq!(
            OpusContainer::parse(&bytes),
            Err(OpusContainerError::Truncated {
                packet_index: 4,
                offset: 20
            })
        );
    }

    #[test]
    fn build_rejects_long_packets_and_leaves_out_alone() {
        let long = vec![0; OMI_OPUS_MAX_PACKET_LEN + 1];
        let max = vec![1; OMI_OPUS_MAX_PACKET_LEN];
        let mut out = b"keep".to_vec();
        assert_eq!(
            build_opus_container(1, [&b"ok"[..], &long], &mut out),
            Err(OpusContainerError::PacketTooLong {
                packet_index: 1,
                len: OMI_OPUS_MAX_PACKET_LEN + 1
            })
        );
        assert_eq!(out, b"keep");
        build_opus_container(1, [&max[..]], &mut out).unwrap();
        let container = OpusContainer::parse(&out[4..]).unwrap();
        assert_eq!(
            container.packets().next().map(<[u8]>::len),
            Some(OMI_OPUS_MAX_PACKET_LEN)
        );
    }

    #[test]
    fn decoded_len_follows_omi_rule() {
        let mut out = Vec::new();
        let packets = [&[1u8][..]; 3];
        for (original, decoded) in [(0, 1920), (1000, 1000), (1920, 1920), (5000, 1920)] {
            out.clear();
            build_opus_container(original, packets, &mut out).unwrap();
            assert_eq!(
                OpusContainer::parse(&out).unwrap().decoded_pcm_len(),
                decoded,
                "original_pcm_len {original}"
            );
        }
    }
}
