//! The integer-only chirp that the Omi vectors use as input audio.
//!
//! The vectors ship no generator; this one was recovered from the committed input chunks and
//! reproduces all 54 of them byte for byte (checked by the fixture-integrity tests):
//!
//! - a 32-bit phase accumulator `p`, starting at 0 for sample index 0;
//! - a per-sample phase increment `inc` that starts at [`INC0`] (200 Hz at 16 kHz:
//!   ⌊200 · 2³² / 16000⌋) and grows by [`INC_STEP`] after every sample (2³² / 16000² ≈ 16.8,
//!   so the pitch rises by about 1 Hz per second);
//! - a triangle wave from the top 16 bits `u = p >> 16`: `u − 16384` on the rising half
//!   (`u < 32768`) and `(65535 − u) − 16384` on the falling half, giving −16384..=16383;
//! - samples written as PCM16LE.
//!
//! All arithmetic is integer and wraps modulo 2³², so the output is identical on every platform.

/// Phase increment for sample index 0: ⌊200 Hz · 2³² / 16 000 Hz⌋.
pub const INC0: u32 = 53_687_091;

/// Amount the phase increment grows after each sample (≈ 2³² / 16 000², a 1 Hz/s sweep).
pub const INC_STEP: u32 = 17;

/// Returns the accumulator state `(phase, increment)` in effect for sample index `n0`.
///
/// `phase(n0) = INC0·n0 + INC_STEP·n0·(n0−1)/2` and `inc(n0) = INC0 + INC_STEP·n0`, both mod 2³².
/// Computed in u128 so any u64 `n0` is exact before the reduction.
fn state_at(n0: u64) -> (u32, u32) {
    let n = u128::from(n0);
    let triangular = n * n.saturating_sub(1) / 2;
    // Only the value mod 2^32 matters, and wrapping u128 arithmetic preserves it.
    let phase = (u128::from(INC0).wrapping_mul(n))
        .wrapping_add(u128::from(INC_STEP).wrapping_mul(triangular));
    let inc = u128::from(INC0).wrapping_add(u128::from(INC_STEP).wrapping_mul(n));
    // Truncation to the low 32 bits is the intended mod 2^32 reduction.
    (phase as u32, inc as u32)
}

/// Returns the triangle-wave sample for a 32-bit phase.
fn triangle(phase: u32) -> i16 {
    let u = phase >> 16; // 0..=65535
    let folded = if u < 32_768 { u } else { 65_535 - u }; // 0..=32767
    // folded - 16384 lies in -16384..=16383, which i16 holds exactly.
    (folded as i32 - 16_384) as i16
}

/// Generates `len` bytes of the chirp as PCM16LE mono, starting at sample index `n0`.
///
/// Consecutive calls continue the same signal: `chirp(n0, 2k) ++ chirp(n0 + k, m)` equals
/// `chirp(n0, 2k + m)`. An odd `len` ends with the low byte of the next sample.
pub fn chirp(n0: u64, len: usize) -> Vec<u8> {
    let (mut phase, mut inc) = state_at(n0);
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        let bytes = triangle(phase).to_le_bytes();
        let take = (len - out.len()).min(2);
        out.extend_from_slice(&bytes[..take]);
        phase = phase.wrapping_add(inc);
        inc = inc.wrapping_add(INC_STEP);
    }
    out
}

/// Generates `count` chirp samples starting at sample index `n0`.
pub fn chirp_samples(n0: u64, count: usize) -> Vec<i16> {
    let (mut phase, mut inc) = state_at(n0);
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        out.push(triangle(phase));
        phase = phase.wrapping_add(inc);
        inc = inc.wrapping_add(INC_STEP);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn triangle_covers_full_range_at_turning_points() {
        assert_eq!(triangle(0), -16_384);
        assert_eq!(triangle(0x7FFF_FFFF), 16_383);
        assert_eq!(triangle(0x8000_0000), 16_383);
        assert_eq!(triangle(u32::MAX), -16_384);
    }

    #[test]
    fn state_at_matches_stepping_the_accumulator() {
        let (mut phase, mut inc) = (0u32, INC0);
        for n in 0..10_000u64 {
            assert_eq!(state_at(n), (phase, inc), "sample {n}");
            phase = phase.wrapping_add(inc);
            inc = inc.wrapping_add(INC_STEP);
        }
    }

    #[test]
    fn chunks_continue_the_same_signal() {
        let whole = chirp(1_000, 4_001);
        let mut parts = chirp(1_000, 2_000);
        parts.extend(chirp(2_000, 2_001));
        assert_eq!(whole, parts);
    }

    #[test]
    fn bytes_and_samples_agree() {
        let samples = chirp_samples(77, 500);
        let bytes: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
        assert_eq!(bytes, chirp(77, 1_000));
    }

    #[test]
    fn huge_start_index_does_not_overflow() {
        assert_eq!(chirp(u64::MAX, 6).len(), 6);
    }
}
