//! Seeking in a recording without loading it: what the browser auditor console opens a
//! session with, however long the session ran.
//!
//! [`digest()`] reads a session once, chunk by chunk, and keeps what a viewer needs to jump
//! anywhere: per channel its size, duration and output total, and a [`Keyframe`] every
//! [`KEYFRAME_BYTES`] of output (the screen as avt's escape-sequence dump, and the chunk and
//! line where the events after it start); plus the session's other events as a timeline. The
//! [`Digest`] is plain data the caller caches as JSON.
//!
//! [`window()`] then cuts an asciicast v2 text of one channel from any moment: from the last
//! keyframe before it, reading only its chunk and those after, until a bounded amount of
//! output. asciinema-player gets that small cast, never the whole recording, and asks for
//! [`Window::next`] to go on.
//!
//! Output reaches the screen only through [`crate::replay::sanitize`], so a keyframe or a
//! window shows what the safe replay would show. Times are per channel never decreasing
//! (an event stamped a few microseconds before the one recorded ahead of it counts as at
//! that one's time, as the asciicast export does); [`Window::next`] relies on that to chain
//! windows with no event lost or repeated.

pub mod digest;
mod parse;
pub mod window;

pub use digest::{ChannelIndex, Digest, KEYFRAME_BYTES, Keyframe, TIMELINE_MAX, digest};
pub use window::{Window, window};

#[cfg(test)]
mod testkit;
