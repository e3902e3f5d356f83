//! Session recording for the bastion.
//!
//! [`tap`] is the seam the proxy relays every channel through; [`event_log`]
//! is the first sink (a JSON-lines event log per session). The write-once
//! asciicast stores grow here behind the same [`tap::Sink`] trait.

pub mod event_log;
pub mod tap;

pub use tap::{
    BreakGlassMeta, ChannelEvent, ChannelKind, ChannelTap, Direction, RecordError, SessionMeta, SessionTap, Sink,
};
