//! Omi Opus container parsing: never panics; on success the packets re-build to exactly the
//! input without its trailing bytes, and the lengths add up.
#![no_main]

use chunk_format::omi_opus::{OMI_OPUS_HEADER_LEN, OpusContainer, build_opus_container};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(container) = OpusContainer::parse(data) else {
        return;
    };
    assert_eq!(
        container.container_len() + container.trailing_bytes(),
        data.len()
    );
    assert_eq!(container.packets().len(), container.packet_count() as usize);
    let packet_bytes: usize = container.packets().map(|p| 2 + p.len()).sum();
    assert_eq!(
        OMI_OPUS_HEADER_LEN + packet_bytes,
        container.container_len()
    );
    let mut rebuilt = Vec::with_capacity(container.container_len());
    build_opus_container(
        container.original_pcm_len(),
        container.packets(),
        &mut rebuilt,
    )
    .expect("parsed packets always fit the container");
    assert_eq!(&rebuilt[..], &data[..container.container_len()]);
});
