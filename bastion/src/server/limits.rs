//! Connection limits: in total and per source, and a much tighter bound on
//! connections that have not authenticated yet (sshd's `MaxStartups` and
//! `PerSourceMaxStartups`), so that half-open handshakes cannot take the
//! slots engineers log in with.
//!
//! An [`Admission`] is held for the life of a connection; its [`Startup`]
//! part is dropped once the client authenticates. Dropping either frees its
//! count, so no path can leak one.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

pub use crate::config::Startups;

/// The limits, as the configuration gives them.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_total: usize,
    pub max_per_source: usize,
    pub startups: Startups,
    pub startups_per_source: usize,
}

/// Counts live connections against the configured limits.
#[derive(Clone)]
pub struct ConnectionLimits {
    inner: Arc<Mutex<Counts>>,
}

struct Counts {
    limits: Limits,
    connections: Tally,
    startups: Tally,
}

/// Live counts in total and by source.
#[derive(Default)]
struct Tally {
    total: usize,
    per_source: HashMap<IpAddr, usize>,
}

impl Tally {
    fn of(&self, source: &IpAddr) -> usize {
        self.per_source.get(source).copied().unwrap_or(0)
    }

    fn add(&mut self, source: IpAddr) {
        *self.per_source.entry(source).or_insert(0) += 1;
        self.total += 1;
    }

    fn remove(&mut self, source: &IpAddr) {
        self.total -= 1;
        if let Some(n) = self.per_source.get_mut(source) {
            *n -= 1;
            if *n == 0 {
                self.per_source.remove(source);
            }
        }
    }
}

/// Why a connection was refused (for the log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Total,
    PerSource,
    StartupsPerSource,
    /// Random early drop, or `max_startups` full.
    Startups,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Refusal::Total => "server.max_connections reached",
            Refusal::PerSource => "server.max_connections_per_source reached",
            Refusal::StartupsPerSource => "server.max_startups_per_source reached (unauthenticated connections)",
            Refusal::Startups => "server.max_startups: unauthenticated connections over the limit (early drop)",
        })
    }
}

/// A connection's slot; released on drop.
pub struct Admission {
    limits: ConnectionLimits,
    source: IpAddr,
}

/// The unauthenticated part of a connection's slot: dropped when the client
/// has authenticated (or the connection ends).
pub struct Startup {
    limits: ConnectionLimits,
    source: IpAddr,
}

/// The address limits count by: IPv4 as it is, IPv6 by its /64 (one host
/// commonly holds a whole /64), IPv4-mapped IPv6 as IPv4.
pub fn source_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        },
    }
}

impl ConnectionLimits {
    pub fn new(limits: Limits) -> Self {
        ConnectionLimits {
            inner: Arc::new(Mutex::new(Counts {
                limits,
                connections: Tally::default(),
                startups: Tally::default(),
            })),
        }
    }

    /// Admits a new (unauthenticated) connection from `source`, or says which
    /// limit it hit. `roll` is a uniformly random number in `0..100` for the
    /// early drop.
    pub fn admit(&self, source: IpAddr, roll: u32) -> Result<(Admission, Startup), Refusal> {
        let source = source_key(source);
        let mut c = self.inner.lock().expect("not poisoned");
        let l = c.limits;
        if c.connections.total >= l.max_total {
            return Err(Refusal::Total);
        }
        if c.connections.of(&source) >= l.max_per_source {
            return Err(Refusal::PerSource);
        }
        if c.startups.of(&source) >= l.startups_per_source {
            return Err(Refusal::StartupsPerSource);
        }
        if roll < l.startups.drop_percent(c.startups.total) {
            return Err(Refusal::Startups);
        }
        c.connections.add(source);
        c.startups.add(source);
        let admission = Admission {
            limits: self.clone(),
            source,
        };
        let startup = Startup {
            limits: self.clone(),
            source,
        };
        Ok((admission, startup))
    }

    /// Live connections, and how many of them are unauthenticated.
    pub fn live(&self) -> (usize, usize) {
        let c = self.inner.lock().expect("not poisoned");
        (c.connections.total, c.startups.total)
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.limits
            .inner
            .lock()
            .expect("not poisoned")
            .connections
            .remove(&self.source);
    }
}

impl Drop for Startup {
    fn drop(&mut self) {
        self.limits
            .inner
            .lock()
            .expect("not poisoned")
            .startups
            .remove(&self.source);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_total: usize, max_per_source: usize, startups: &str, per_source: usize) -> ConnectionLimits {
        ConnectionLimits::new(Limits {
            max_total,
            max_per_source,
            startups: Startups::parse(startups).unwrap(),
            startups_per_source: per_source,
        })
    }

    #[test]
    fn per_source_and_total_limits_and_release() {
        let l = limits(3, 2, "10", 10);
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        let a1 = l.admit(a, 0).unwrap();
        let _a2 = l.admit(a, 0).unwrap();
        assert_eq!(l.admit(a, 0).err(), Some(Refusal::PerSource));
        let _b1 = l.admit(b, 0).unwrap();
        assert_eq!(l.admit(b, 0).err(), Some(Refusal::Total));
        drop(a1);
        assert_eq!(l.live(), (2, 2));
        l.admit(a, 0).unwrap();
    }

    #[test]
    fn authenticating_frees_the_startup_slot_only() {
        let l = limits(100, 100, "2", 2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let (c1, s1) = l.admit(a, 99).unwrap();
        let (_c2, _s2) = l.admit(a, 99).unwrap();
        assert_eq!(l.admit(a, 0).err(), Some(Refusal::StartupsPerSource));
        drop(s1);
        assert_eq!(l.live(), (2, 1));
        let (_c3, _s3) = l.admit(a, 0).unwrap();
        assert_eq!(l.live(), (3, 2));
        drop(c1);
        assert_eq!(l.live(), (2, 2));
    }

    #[test]
    fn early_drop_refuses_by_the_roll() {
        let l = limits(100, 100, "1:50:3", 100);
        let _first = l.admit("10.0.0.1".parse().unwrap(), 0).unwrap();
        // One live: 50 % drop. A roll of 49 is refused, 50 is accepted.
        assert_eq!(l.admit("10.0.0.2".parse().unwrap(), 49).err(), Some(Refusal::Startups));
        let _second = l.admit("10.0.0.2".parse().unwrap(), 50).unwrap();
        let _third = l.admit("10.0.0.3".parse().unwrap(), 99).unwrap();
        assert_eq!(l.admit("10.0.0.4".parse().unwrap(), 99).err(), Some(Refusal::Startups));
    }

    #[test]
    fn ipv6_sources_count_by_their_64() {
        let l = limits(100, 100, "100", 2);
        let _a = l.admit("2001:db8::1".parse().unwrap(), 0).unwrap();
        let _b = l.admit("2001:db8::ffff:2".parse().unwrap(), 0).unwrap();
        assert_eq!(
            l.admit("2001:db8:0:0:1::3".parse().unwrap(), 0).err(),
            Some(Refusal::StartupsPerSource)
        );
        l.admit("2001:db8:0:1::1".parse().unwrap(), 0).unwrap();
        assert_eq!(
            source_key("::ffff:10.1.2.3".parse().unwrap()),
            "10.1.2.3".parse::<IpAddr>().unwrap()
        );
    }
}
