//! Sans-IO codecs for chunkvault: the one place that knows how names, frames and containers
//! look as bytes.
//!
//! No async, no crypto, no I/O: every function takes bytes or text and returns a value or a
//! typed error. Every parser here is total (no panics, no unbounded allocation, no loops that do
//! not advance), property-tested and fuzzed.
//!
//! ```
//! use chunk_format::{ObjectKind, ObjectName, Timestamp};
//!
//! // Omi names a 12-chunk encrypted batch by its first and last chunk starts.
//! let first = Timestamp::from_f64(1786961845.727)?;
//! let last = Timestamp::from_f64(1786961900.727)?;
//! let name = ObjectName::batch(first, last, 12, true)?;
//! assert_eq!(name.to_string(), "1786961845.727-1786961900.727.batch.enc");
//!
//! // Every reader parses names with the same codec; foreign names are errors, not audio.
//! let parsed: ObjectName = name.to_string().parse()?;
//! assert_eq!(parsed.kind(), ObjectKind::BatchEnc);
//! assert!("notes.txt".parse::<ObjectName>().is_err());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Modules, one per format:
//! - [`timestamp`]: epoch milliseconds with Python `'%.3f'` text form;
//! - [`name`]: object names of every kind (design.md §3.1);
//! - [`frames`]: Omi's length-prefixed frames;
//! - [`omi_opus`]: Omi's Opus container (header and packets; no decoding);
//! - [`wav`]: canonical PCM16 WAV headers and a total RIFF/WAVE parser;
//! - [`pack`]: chunkvault's native pack container (design.md §3.3).

pub mod frames;
pub mod name;
pub mod omi_opus;
pub mod pack;
pub mod span;
pub mod timestamp;
pub mod wav;

pub use name::{NameError, ObjectKind, ObjectName};
pub use timestamp::{Timestamp, TimestampError};
