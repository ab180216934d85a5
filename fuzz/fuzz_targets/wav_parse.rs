//! PCM16 WAV parsing: never panics; on success the data range lies inside the input, the format
//! is consistent, and the canonical header for that spec parses back to the same spec.
#![no_main]

use chunk_format::wav::parse_wav_pcm16;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(info) = parse_wav_pcm16(data) else {
        return;
    };
    assert!(info.data_range().end <= data.len());
    assert!(info.data_offset >= 12 + 8 + 16 + 8);
    assert_eq!(info.bits, 16);
    assert!(info.channels > 0 && info.sample_rate > 0);
    // The spec may still be unwritable (byte rate overflow); when it is writable, it round-trips.
    if let Ok(header) = info.spec().header(0) {
        let again = parse_wav_pcm16(&header).expect("canonical header parses");
        assert_eq!(again.spec(), info.spec());
        assert_eq!((again.data_offset, again.data_len), (44, 0));
    }
});
