//! Second factors and abuse limits, as plain synchronous functions.
//!
//! * [`totp`]: RFC 6238 time-based one-time passwords (secrets, `otpauth://`
//!   URIs, verification with ±1 step of drift, the enrollment QR code drawn for
//!   a terminal).
//! * [`lockout`]: the pure failure-limit policy (growing delays, then a lock),
//!   applied to the counters that [`crate::state::StateStore`] keeps.
//!
//! Nothing here performs I/O except reading the system random generator.

pub mod lockout;
mod qr;
pub mod totp;

pub use qr::qr_terminal;
