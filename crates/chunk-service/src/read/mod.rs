//! The read path, from a request to PCM: listing ([`list`]), what a read accepts
//! ([`policy`]), the plan and the download pipeline ([`download`]), the decoders of Omi
//! objects ([`decode`]) and packs ([`pack`]), the one format rule ([`format`]), placement on
//! a timeline ([`timeline`]) and what placing did ([`placement`]); and on top of them the
//! checks of one object ([`check`]) and of a whole conversation's timeline ([`audit`]).

pub(crate) mod audit;
pub(crate) mod check;
pub(crate) mod decode;
pub(crate) mod download;
pub(crate) mod format;
pub(crate) mod list;
pub(crate) mod pack;
pub(crate) mod placement;
pub(crate) mod policy;
pub(crate) mod timeline;
