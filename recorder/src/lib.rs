//! Session recording for the bastion.
//!
//! [`tap`] is the seam the proxy relays every channel through; [`event_log`]
//! is the first sink (a JSON-lines event log per session). The write-once
//! asciicast stores grow here behind the same [`tap::Sink`] trait.

pub mod cast;
pub mod cast_parse;
pub mod event_log;
pub mod format;
pub mod manifest;
pub mod read;
pub mod replay;
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
