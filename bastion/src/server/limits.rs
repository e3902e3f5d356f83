//! Connection limits: in total and per source address.
//!
//! An [`Admission`] is held for the life of a connection; dropping it frees
//! the slot, so no path can leak a count.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Counts live connections against the configured limits.
#[derive(Clone)]
pub struct ConnectionLimits {
    inner: Arc<Mutex<Counts>>,
}

struct Counts {
    max_total: usize,
    max_per_source: usize,
    total: usize,
    per_source: HashMap<IpAddr, usize>,
}

/// A connection's slot; released on drop.
pub struct Admission {
    limits: ConnectionLimits,
    source: IpAddr,
}

impl ConnectionLimits {
    pub fn new(max_total: usize, max_per_source: usize) -> Self {
        ConnectionLimits {
            inner: Arc::new(Mutex::new(Counts {
                max_total,
                max_per_source,
                total: 0,
                per_source: HashMap::new(),
            })),
        }
    }

    /// Admits a connection from `source`, or says which limit it hit.
    pub fn admit(&self, source: IpAddr) -> Result<Admission, &'static str> {
        let mut c = self.inner.lock().expect("not poisoned");
        if c.total >= c.max_total {
            return Err("server.max_connections reached");
        }
        let max_per_source = c.max_per_source;
        let n = c.per_source.entry(source).or_insert(0);
        if *n >= max_per_source {
            return Err("server.max_connections_per_source reached");
        }
        *n += 1;
        c.total += 1;
        Ok(Admission {
            limits: self.clone(),
            source,
        })
    }

    pub fn live(&self) -> usize {
        self.inner.lock().expect("not poisoned").total
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        let mut c = self.limits.inner.lock().expect("not poisoned");
        c.total -= 1;
        if let Some(n) = c.per_source.get_mut(&self.source) {
            *n -= 1;
            if *n == 0 {
                c.per_source.remove(&self.source);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_source_and_total_limits_and_release() {
        let l = ConnectionLimits::new(3, 2);
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        let a1 = l.admit(a).unwrap();
        let _a2 = l.admit(a).unwrap();
        assert_eq!(l.admit(a).err(), Some("server.max_connections_per_source reached"));
        let _b1 = l.admit(b).unwrap();
        assert_eq!(l.admit(b).err(), Some("server.max_connections reached"));
        drop(a1);
        assert_eq!(l.live(), 2);
        l.admit(a).unwrap();
    }
}
