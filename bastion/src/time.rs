//! Wall-clock time as the bastion stores and shows it: Unix seconds
//! (`i64`, as SQL keeps them) and RFC 3339 text. The one clock every layer
//! reads, so that a grant's end, a lock's end and a certificate's validity
//! are all compared on the same scale.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Unix seconds now (0 if the clock is before 1970, saturating far ahead).
pub fn now() -> i64 {
    unix(SystemTime::now())
}

/// Unix seconds of `t`.
pub fn unix(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// `2026-11-28T18:56:27Z` for Unix seconds (times before 1970 show as 1970).
pub fn rfc3339(unix: i64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(unix.max(0) as u64)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_figures() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(-5), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_000_000_000), "2001-09-09T01:46:40Z");
        assert_eq!(unix(UNIX_EPOCH + Duration::from_secs(42)), 42);
        assert_eq!(unix(UNIX_EPOCH - Duration::from_secs(42)), 0);
        assert!(now() > 1_700_000_000);
    }
}
