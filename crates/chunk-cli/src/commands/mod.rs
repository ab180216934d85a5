//! One module per subcommand.

pub(crate) mod audit;
pub(crate) mod compact;
pub(crate) mod demo;
pub(crate) mod export;
pub(crate) mod ingest;
pub(crate) mod keys;
pub(crate) mod ls;
pub(crate) mod purge;
pub(crate) mod rm;
pub(crate) mod stats;
pub(crate) mod verify;
