//! `server.max_startups`: how unauthenticated connections are bounded, as
//! sshd's `MaxStartups` (`start:rate:full`, random early drop). Pure: the
//! listener's counters (`server::limits`) roll the dice.

use std::fmt;

/// `start:rate:full`: below `start` unauthenticated connections, every new
/// one is accepted; from `start`, a new one is refused with probability
/// `rate`%, rising linearly to 100% at `full` (random early drop).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Startups {
    pub start: usize,
    pub rate: u8,
    pub full: usize,
}

impl Startups {
    /// Parses `start:rate:full` (or a bare `full`, refused beyond, as sshd).
    pub fn parse(text: &str) -> Result<Startups, String> {
        let bad = || format!("`{text}` is not START:RATE:FULL such as \"400:30:800\" (RATE a percentage)");
        let parts: Vec<&str> = text.trim().split(':').collect();
        let number = |s: &str| s.trim().parse::<usize>().map_err(|_| bad());
        let s = match parts.as_slice() {
            [full] => {
                let full = number(full)?;
                Startups {
                    start: full,
                    rate: 100,
                    full,
                }
            }
            [start, rate, full] => {
                let rate = number(rate)?;
                Startups {
                    start: number(start)?,
                    rate: u8::try_from(rate)
                        .ok()
                        .filter(|r| (1..=100).contains(r))
                        .ok_or_else(bad)?,
                    full: number(full)?,
                }
            }
            _ => return Err(bad()),
        };
        if s.full == 0 || s.start > s.full {
            return Err(format!(
                "`{text}`: START must not exceed FULL, and FULL must be at least 1"
            ));
        }
        Ok(s)
    }

    /// The chance, in percent, that a new connection is refused while `live`
    /// unauthenticated ones are open.
    pub fn drop_percent(&self, live: usize) -> u32 {
        if live < self.start {
            0
        } else if live >= self.full {
            100
        } else {
            let rate = u32::from(self.rate);
            let span = (self.full - self.start) as u64;
            let into = (live - self.start) as u64;
            rate + ((100 - rate) as u64 * into / span) as u32
        }
    }
}

impl fmt::Display for Startups {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.start, self.rate, self.full)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn early_drop_rises_from_rate_to_full() {
        let s = Startups::parse("10:30:100").unwrap();
        assert_eq!(s.drop_percent(0), 0);
        assert_eq!(s.drop_percent(9), 0);
        assert_eq!(s.drop_percent(10), 30);
        assert_eq!(s.drop_percent(55), 65);
        assert_eq!(s.drop_percent(99), 99);
        assert_eq!(s.drop_percent(100), 100);
        assert_eq!(s.drop_percent(10_000), 100);
        for live in 0..200 {
            assert!(s.drop_percent(live) <= s.drop_percent(live + 1), "monotonic at {live}");
        }
    }

    #[test]
    fn startups_grammar() {
        assert_eq!(
            Startups::parse("400:30:800"),
            Ok(Startups {
                start: 400,
                rate: 30,
                full: 800
            })
        );
        assert_eq!(Startups::parse("50").unwrap().drop_percent(49), 0);
        assert_eq!(Startups::parse("50").unwrap().drop_percent(50), 100);
        for bad in [
            "",
            "a",
            "1:2",
            "10:0:20",
            "10:101:20",
            "30:10:20",
            "0",
            "1:2:3:4",
            "-1:30:5",
        ] {
            assert!(Startups::parse(bad).is_err(), "{bad} accepted");
        }
    }
}
