//! Session recording for the bastion.
//!
//! [`tap`] is the seam the proxy relays every channel through; [`sink`] is
//! the recording sink behind it (spool, chunks, signed manifests) writing to
//! a write-once [`store`] (local WORM directory or S3 Object Lock). The
//! auditor side reads them back: [`read`], [`verify`], [`cast`] (asciicast
//! export), [`replay`] and [`search`]; [`screen`] makes a long session
//! seekable for the browser console (keyframes once, then small asciicast
//! windows from any moment); [`display`] escapes every recorded string they
//! show.
//!
//! A [`SessionTap`] can only be made inside this crate, by a started sink:
//! outside it there is no way to build a relay that records nothing.

pub mod cast;
pub mod cast_parse;
pub mod display;
pub mod format;
pub mod manifest;
pub mod read;
pub mod replay;
pub mod screen;
pub mod search;
pub mod sftp;
pub mod sink;
pub mod spool;
pub mod store;
pub mod tap;
pub mod verify;

pub use sink::{RecorderConfig, RecordingSink, RecoveryReport, SpoolStatus};
pub use tap::{
    BreakGlassMeta, ChannelEvent, ChannelKind, ChannelTap, Direction, RecordError, SessionMeta, SessionTap, Sink,
};
