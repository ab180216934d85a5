//! Spool log segments: every input recovers batches or gives a typed one-line error, never a
//! panic; each recovered chunk lies inside the input, in order, and batches hold chunks.

#![no_main]

use chunk_service::spool::scan_segment;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Half the inputs start with the log's magic, so the fuzzer explores records, not magic.
    let input = match data.split_first() {
        Some((&flag, rest)) if flag % 2 == 0 => [b"CVSPOOL2".as_slice(), rest].concat(),
        _ => data.to_vec(),
    };
    match scan_segment(&input) {
        Ok(batches) => {
            for batch in batches {
                assert!(!batch.chunks.is_empty());
                let mut previous_end = 0;
                for chunk in &batch.chunks {
                    let end = chunk.offset + u64::from(chunk.len);
                    assert!(chunk.offset >= previous_end && end <= input.len() as u64);
                    previous_end = end;
                }
                assert!(batch.chunks.windows(2).all(|w| w[0].timestamp < w[1].timestamp));
            }
        }
        Err(error) => assert!(!error.to_string().contains('\n')),
    }
});
