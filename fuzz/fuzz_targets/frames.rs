//! Omi frame iteration: on any input the iterator ends, yields frames at strictly increasing,
//! contiguous, in-bounds offsets, at most one error (last), and never consumes more than the
//! input. A small `max_body` taken from the first byte also exercises the size limit.
#![no_main]

use chunk_format::frames::{FRAME_PREFIX_LEN, Frames};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (limit, input) = match data.split_first() {
        Some((&selector, rest)) if selector & 1 == 1 => (u32::from(selector) * 64, rest),
        _ => (chunk_format::frames::DEFAULT_MAX_FRAME_BODY, data),
    };
    let mut expected_offset = 0;
    let mut consumed = 0usize;
    let mut failed = false;
    let mut frames = Frames::with_max_body(input, limit);
    for (index, item) in frames.by_ref().enumerate() {
        assert!(!failed, "item after an error");
        assert!(index <= input.len(), "iterator does not advance");
        match item {
            Ok(frame) => {
                assert_eq!(frame.index, index);
                assert_eq!(frame.offset, expected_offset, "offsets not contiguous");
                assert!(!frame.body.is_empty());
                assert!(frame.body.len() <= limit as usize);
                let end = frame.offset + frame.encoded_len();
                assert!(end <= input.len(), "frame past the end");
                assert_eq!(frame.body, &input[frame.offset + FRAME_PREFIX_LEN..end]);
                expected_offset = end;
                consumed += frame.encoded_len();
            }
            Err(_) => failed = true,
        }
    }
    assert!(consumed <= input.len());
    assert_eq!(frames.offset(), consumed);
    assert_eq!(
        failed,
        consumed < input.len(),
        "clean end must consume everything"
    );
});
