//! Property tests for every codec in `chunk-format` (names start with `prop_`, so
//! `cargo xtask proptest` runs them with many cases).

use std::time::Duration;

use chunk_format::frames::{FRAME_PREFIX_LEN, Frames, encode_frame};
use chunk_format::omi_opus::{OpusContainer, build_opus_container};
use chunk_format::wav::{WAV_HEADER_LEN, WavSpec, parse_wav_pcm16};
use chunk_format::{ObjectKind, ObjectName, Timestamp};
use proptest::prelude::*;

const MAX_MILLIS: u64 = Timestamp::MAX.as_millis();

/// The exact `'%.3f'` rule, computed without floating point: decompose `x = m · 2^e`, multiply
/// by 1000 and round the exact rational half to even. Returns the millisecond count (which may be
/// 10^16, one past the range, when `x` rounds up to `10000000000000.000`).
fn reference_millis(x: f64) -> u128 {
    let bits = x.to_bits();
    let exp_bits = ((bits >> 52) & 0x7ff) as i32;
    let fraction = u128::from(bits & ((1u64 << 52) - 1));
    let (mantissa, exp) = if exp_bits == 0 {
        (fraction, -1074)
    } else {
        (fraction | (1u128 << 52), exp_bits - 1075)
    };
    let scaled = mantissa * 1000; // < 2^63
    if exp >= 0 {
        return scaled << exp; // x < 1e13 keeps this small
    }
    let shift = exp.unsigned_abs();
    if shift > 100 {
        // scaled < 2^63 < half of 2^shift: rounds to zero.
        return 0;
    }
    let quotient = scaled >> shift;
    let remainder = scaled & ((1u128 << shift) - 1);
    let half = 1u128 << (shift - 1);
    if remainder > half || (remainder == half && quotient % 2 == 1) {
        quotient + 1
    } else {
        quotient
    }
}

/// Finite non-negative floats below 10^13, spread over every exponent (bit patterns), uniformly
/// over the range, and at or next to decimal ties `k/1000 + 0.0005`.
fn seconds_f64() -> impl Strategy<Value = f64> {
    let by_bits = (0u64..1e13f64.to_bits()).prop_map(f64::from_bits);
    let uniform = 0.0..1e13f64;
    let near_tie = (0u64..10_000_000_000_000_000, -3i32..=3).prop_map(|(k, ulps)| {
        let mut x = (k as f64 + 0.5) / 1000.0;
        for _ in 0..ulps.unsigned_abs() {
            x = if ulps > 0 { x.next_up() } else { x.next_down() };
        }
        x.max(0.0)
    });
    let small_tie = (0u64..100_000, -2i32..=2).prop_map(|(k, ulps)| {
        let mut x = k as f64 / 1000.0 + 0.0005;
        for _ in 0..ulps.unsigned_abs() {
            x = if ulps > 0 { x.next_up() } else { x.next_down() };
        }
        x
    });
    // Exact ties: `j/16` is exact in binary and, for odd `j`, `1000·j/16` ends in `.5`.
    let exact_tie = (0u64..160_000_000_000_000).prop_map(|j| (2 * j + 1) as f64 / 16.0);
    prop_oneof![by_bits, uniform, near_tie, small_tie, exact_tie]
        .prop_filter("below 1e13", |x| *x < 1e13)
}

#[test]
fn reference_rounds_exact_binary_values_half_to_even() {
    // The pairs of compat doc §1.3, checked against CPython's '%.3f'.
    assert_eq!(reference_millis(1000.0625), 1_000_062);
    assert_eq!(reference_millis(1000.1875), 1_000_188);
    assert_eq!(reference_millis(0.0025), 3);
    assert_eq!(reference_millis(1000.0005), 1_000_000);
    assert_eq!(reference_millis(1700000000.1234), 1_700_000_000_123);
    assert_eq!(reference_millis(f64::from_bits(1)), 0);
    assert_eq!(
        reference_millis(9_999_999_999_999.998),
        9_999_999_999_999_998
    );
}

fn timestamp() -> impl Strategy<Value = Timestamp> {
    prop_oneof![
        0..=MAX_MILLIS,
        1_700_000_000_000u64..1_900_000_000_000,
        0u64..100_000,
        (MAX_MILLIS - 100_000)..=MAX_MILLIS,
        ((1u64 << 43) * 1000 - 100_000)..((1u64 << 43) * 1000 + 100_000),
        ((1u64 << 53) - 100_000)..((1u64 << 53) + 100_000),
    ]
    .prop_filter_map("in range", Timestamp::from_millis)
}

proptest! {
    #[test]
    fn prop_timestamp_display_parse_round_trip(ts in timestamp()) {
        let text = ts.to_string();
        let (int, frac) = text.split_once('.').unwrap();
        prop_assert_eq!(frac.len(), 3);
        prop_assert!(int == "0" || !int.starts_with('0'));
        prop_assert_eq!(text.parse::<Timestamp>(), Ok(ts));
        prop_assert_eq!(format!("{int}{frac}").parse::<u64>(), Ok(ts.as_millis()));
    }

    #[test]
    fn prop_timestamp_order_and_arithmetic(a in timestamp(), b in timestamp()) {
        prop_assert_eq!(a.cmp(&b), a.as_millis().cmp(&b.as_millis()));
        prop_assert_eq!(a.millis_since(b), a.as_millis() as i64 - b.as_millis() as i64);
        let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
        let gap = hi.duration_since(lo).unwrap();
        prop_assert_eq!(lo.checked_add(gap), Some(hi));
        prop_assert_eq!(hi.checked_sub(gap), Some(lo));
        prop_assert_eq!(lo.saturating_add_millis(gap.as_millis() as u64), hi);
        if lo != hi {
            prop_assert_eq!(lo.duration_since(hi), None);
        }
        prop_assert_eq!(hi.checked_add(Duration::from_millis(MAX_MILLIS - hi.as_millis() + 1)), None);
    }

    #[test]
    fn prop_from_f64_matches_exact_percent_3f(x in seconds_f64()) {
        let expected = reference_millis(x);
        match u64::try_from(expected).ok().and_then(Timestamp::from_millis) {
            Some(ts) => prop_assert_eq!(Timestamp::from_f64(x), Ok(ts), "x = {:?}", x),
            None => prop_assert!(Timestamp::from_f64(x).is_err(), "x = {:?}", x),
        }
    }

    #[test]
    fn prop_as_f64_is_the_nearest_float(ts in timestamp()) {
        prop_assert_eq!(ts.as_f64(), ts.to_string().parse::<f64>().unwrap(), "{:?}", ts);
    }

    #[test]
    fn prop_from_f64_inverts_as_f64(ts in timestamp()) {
        // Exact below 2^43 s, where f64 spacing is at most 2^-10 s (see `Timestamp::as_f64`).
        let round_trip = Timestamp::from_f64(ts.as_f64());
        if ts.as_millis() < (1u64 << 43) * 1000 {
            prop_assert_eq!(round_trip, Ok(ts));
        } else {
            let back = round_trip.unwrap();
            prop_assert!(back.as_millis().abs_diff(ts.as_millis()) <= 1, "{:?} -> {:?}", ts, back);
        }
    }
}

/// A valid name of any kind, built through the constructors.
fn object_name() -> impl Strategy<Value = ObjectName> {
    let kind = proptest::sample::select(ObjectKind::MATCH_ORDER.to_vec());
    (kind, timestamp(), timestamp(), 1usize..5).prop_filter_map(
        "valid range",
        |(kind, a, b, chunks)| {
            let (start, end) = if a <= b { (a, b) } else { (b, a) };
            match kind {
                ObjectKind::Pack => ObjectName::pack(start, end).ok(),
                ObjectKind::BatchBin | ObjectKind::BatchEnc => {
                    ObjectName::batch(start, end, chunks, kind == ObjectKind::BatchEnc).ok()
                }
                _ => ObjectName::single(start, kind).ok(),
            }
        },
    )
}

/// Strings made of name-like pieces, so that valid names are common among the noise.
fn name_like() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        "[0-9]{1,14}",
        Just(".".to_owned()),
        Just("-".to_owned()),
        "\\.[0-9]{0,4}",
        Just(".bin".to_owned()),
        Just(".enc".to_owned()),
        Just(".opus".to_owned()),
        Just(".batch".to_owned()),
        Just(".pack".to_owned()),
        Just(".meta.json".to_owned()),
        "[a-z+ ١]{1,3}",
    ];
    proptest::collection::vec(piece, 0..8).prop_map(|pieces| pieces.concat())
}

proptest! {
    #[test]
    fn prop_name_display_parse_round_trip(name in object_name()) {
        let text = name.to_string();
        prop_assert!(text.len() <= ObjectName::MAX_LEN);
        prop_assert_eq!(text.parse::<ObjectName>(), Ok(name));
        let suffix = format!(".{}", name.kind().extension());
        prop_assert!(text.ends_with(&suffix), "{} lacks {}", text, suffix);
        prop_assert!(name.start() <= name.end());
        prop_assert!(name.covers(name.start()));
        prop_assert_eq!(name.covers(name.end()), name.kind() != ObjectKind::Pack);
    }

    #[test]
    fn prop_name_parse_is_total_and_exact(text in prop_oneof![".*", name_like()]) {
        if let Ok(name) = text.parse::<ObjectName>() {
            prop_assert_eq!(name.to_string(), text);
        }
    }
}

proptest! {
    #[test]
    fn prop_frames_encode_iterate_round_trip(
        bodies in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..200), 0..12)
    ) {
        let mut object = Vec::new();
        let mut offsets = Vec::new();
        for body in &bodies {
            offsets.push(object.len());
            encode_frame(body, &mut object).unwrap();
        }
        let frames: Vec<_> = Frames::new(&object).collect::<Result<_, _>>().unwrap();
        prop_assert_eq!(frames.len(), bodies.len());
        for (i, frame) in frames.iter().enumerate() {
            prop_assert_eq!(frame.index, i);
            prop_assert_eq!(frame.offset, offsets[i]);
            prop_assert_eq!(frame.body, &bodies[i][..]);
        }
        let mut walker = Frames::new(&object);
        walker.by_ref().for_each(drop);
        prop_assert_eq!(walker.offset(), object.len());
    }

    #[test]
    fn prop_frames_iteration_is_total(
        bytes in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..256),
            // Mostly small length prefixes, so well-formed frames occur.
            proptest::collection::vec(prop_oneof![Just(0u8), Just(1), Just(3), any::<u8>()], 0..256),
        ]
    ) {
        let mut consumed = 0;
        let mut last_end = 0;
        let mut errors = 0;
        let mut items = 0;
        for item in Frames::new(&bytes) {
            items += 1;
            prop_assert!(items <= bytes.len(), "iterator does not advance");
            match item {
                Ok(frame) => {
                    prop_assert_eq!(errors, 0, "frame after an error");
                    prop_assert_eq!(frame.offset, last_end);
                    last_end = frame.offset + frame.encoded_len();
                    prop_assert!(last_end <= bytes.len());
                    prop_assert_eq!(frame.body, &bytes[frame.offset + FRAME_PREFIX_LEN..last_end]);
                    consumed += frame.encoded_len();
                }
                Err(_) => errors += 1,
            }
        }
        prop_assert!(errors <= 1);
        prop_assert!(consumed <= bytes.len());
        prop_assert_eq!(errors == 0, consumed == bytes.len());
    }
}

proptest! {
    #[test]
    fn prop_opus_container_build_parse_round_trip(
        original in any::<u32>(),
        packets in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..40),
        trailing in proptest::collection::vec(any::<u8>(), 0..4),
    ) {
        let mut bytes = Vec::new();
        build_opus_container(original, packets.iter().map(Vec::as_slice), &mut bytes).unwrap();
        let container_len = bytes.len();
        prop_assert_eq!(container_len, 8 + packets.iter().map(|p| 2 + p.len()).sum::<usize>());
        bytes.extend_from_slice(&trailing);
        let parsed = OpusContainer::parse(&bytes).unwrap();
        prop_assert_eq!(parsed.original_pcm_len(), original);
        prop_assert_eq!(parsed.packet_count() as usize, packets.len());
        prop_assert_eq!(parsed.container_len(), container_len);
        prop_assert_eq!(parsed.trailing_bytes(), trailing.len());
        prop_assert!(parsed.packets().eq(packets.iter().map(Vec::as_slice)));
    }

    #[test]
    fn prop_opus_container_parse_is_total(
        bytes in proptest::collection::vec(prop_oneof![Just(0u8), Just(1), Just(2), any::<u8>()], 0..128)
    ) {
        if let Ok(parsed) = OpusContainer::parse(&bytes) {
            prop_assert_eq!(parsed.container_len() + parsed.trailing_bytes(), bytes.len());
            prop_assert_eq!(parsed.packets().count(), parsed.packet_count() as usize);
            let mut rebuilt = Vec::new();
            build_opus_container(parsed.original_pcm_len(), parsed.packets(), &mut rebuilt).unwrap();
            prop_assert_eq!(&rebuilt[..], &bytes[..parsed.container_len()]);
        }
    }
}

proptest! {
    #[test]
    fn prop_wav_header_parse_round_trip(
        sample_rate in prop_oneof![Just(16_000u32), Just(8_000), Just(48_000), 1u32..1_000_000],
        channels in 1u16..16,
        data in proptest::collection::vec(any::<u8>(), 0..64),
        trailing in proptest::collection::vec(any::<u8>(), 0..8),
    ) {
        let spec = WavSpec { sample_rate, channels };
        let mut file = spec.header(data.len() as u32).unwrap().to_vec();
        file.extend_from_slice(&data);
        file.extend_from_slice(&trailing);
        let info = parse_wav_pcm16(&file).unwrap();
        prop_assert_eq!(info.spec(), spec);
        prop_assert_eq!(info.bits, 16);
        prop_assert_eq!(info.data_offset, WAV_HEADER_LEN);
        prop_assert_eq!(&file[info.data_range()], &data[..]);
        prop_assert_eq!(
            u32::from_le_bytes(file[4..8].try_into().unwrap()) as usize,
            36 + data.len()
        );
    }

    #[test]
    fn prop_wav_parse_is_total(
        tail in proptest::collection::vec(any::<u8>(), 0..96),
        riff_preamble in any::<bool>(),
    ) {
        let mut bytes = if riff_preamble { b"RIFF\0\0\0\0WAVE".to_vec() } else { Vec::new() };
        bytes.extend_from_slice(&tail);
        if let Ok(info) = parse_wav_pcm16(&bytes) {
            prop_assert!(info.data_range().end <= bytes.len());
            prop_assert!(info.channels > 0 && info.sample_rate > 0);
        }
    }
}

proptest! {
    /// Every finite start, sample count and rate survives Omi's span metadata exactly: the
    /// start as Python's `repr` (which reads back as the same float), the counts as decimals.
    #[test]
    fn prop_span_metadata_round_trip(
        bits in any::<u64>(),
        samples in 1u64..,
        rate in 1u32..,
    ) {
        let start = f64::from_bits(bits);
        prop_assume!(start.is_finite());
        let span = chunk_format::span::OmiSpan::new(start, samples, rate).unwrap();
        let pairs = span.metadata();
        let back = chunk_format::span::OmiSpan::from_metadata(|key| {
            pairs.iter().find(|(k, _)| *k == key).map(|(_, v)| v.as_str())
        });
        prop_assert_eq!(back.map(|s| s.start.to_bits()), Some(start.to_bits()));
        prop_assert_eq!(back, Some(span));
    }
}
