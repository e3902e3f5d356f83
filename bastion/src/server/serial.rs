//! One login attempt at a time per user.
//!
//! The back-off in [`crate::factors::lockout`] grows with each recorded
//! failure, but a counter read by ten parallel connections at once says
//! "no failures" to all ten. Holding a per-user lock from the gate, through
//! the directory's verdict, to the recorded outcome makes parallel attempts
//! queue behind each other, so each one waits the delay the previous one
//! earned: ten parallel wrong passwords cost as long as ten in a row.
//!
//! The lock is local to this process; several bastions each serialise their
//! own attempts, and the shared counter still locks the account after
//! `max_failures` in all.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

/// A held turn: the next attempt for the same key starts when this drops.
pub type Turn = OwnedMutexGuard<()>;

/// Async locks by key, created on demand and forgotten when nobody holds or
/// waits for them.
#[derive(Default)]
pub struct Serial {
    locks: Mutex<HashMap<String, Weak<AsyncMutex<()>>>>,
}

impl Serial {
    /// Waits for the key's turn (first come, first served: tokio's mutex is fair).
    pub async fn turn(&self, key: &str) -> Turn {
        self.lock_for(key).lock_owned().await
    }

    fn lock_for(&self, key: &str) -> Arc<AsyncMutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(lock) = locks.get(key).and_then(Weak::upgrade) {
            return lock;
        }
        // Forget the dead entries now and then, so that a spray of made-up
        // names does not grow the map without bound.
        if locks.len() >= 1024 && locks.len().is_power_of_two() {
            locks.retain(|_, w| w.strong_count() > 0);
        }
        let lock = Arc::new(AsyncMutex::new(()));
        locks.insert(key.to_owned(), Arc::downgrade(&lock));
        lock
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.locks.lock().unwrap().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn same_key_waits_other_key_does_not() {
        let serial = Arc::new(Serial::default());
        let held = serial.turn("user:alice").await;
        let other = tokio::time::timeout(Duration::from_secs(5), serial.turn("user:bob")).await;
        assert!(other.is_ok(), "another key must not wait");
        let s = serial.clone();
        let mut waiting = tokio::spawn(async move { s.turn("user:alice").await });
        assert!(
            tokio::time::timeout(Duration::from_millis(50), &mut waiting)
                .await
                .is_err(),
            "the same key must wait while the turn is held"
        );
        drop(held);
        assert!(tokio::time::timeout(Duration::from_secs(5), waiting).await.is_ok());
    }

    #[tokio::test]
    async fn dead_entries_are_forgotten() {
        let serial = Serial::default();
        for i in 0..5000 {
            drop(serial.turn(&format!("user:u{i}")).await);
        }
        assert!(serial.len() < 2100, "map kept {} dead entries", serial.len());
    }
}
