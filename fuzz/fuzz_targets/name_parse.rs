//! Object-name codec: every UTF-8 string either fails to parse or parses to a name that
//! formats back to exactly the same string (`format(parse(s)) == s`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(name) = text.parse::<chunk_format::ObjectName>() {
        assert_eq!(name.to_string(), text, "name did not round-trip");
    }
});
