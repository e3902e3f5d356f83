//! Failure limits: growing back-off, then a time-boxed lock (pure, no I/O).
//!
//! Counters are kept per key by [`crate::state::StateStore`] (callers use
//! `user:NAME` and `src:IP`, see [`crate::state::user_failure_key`]); this
//! module only says what a counter means:
//!
//! * after the 1st, 2nd, … failure the next attempt waits `base_delay`,
//!   `2 × base_delay`, … up to `max_delay` ([`Gate::Delay`]);
//! * the `max_failures`-th failure locks the key for `lock_for`
//!   ([`Gate::Locked`]), in the style of PCI DSS 8.3.4 (at most 10 attempts,
//!   locked for at least 30 minutes);
//! * a counter starts afresh once its lock has ended, or when its last failure
//!   is older than `lock_for` (like Active Directory's "reset account lockout
//!   counter after", set equal to the lockout duration). A successful login
//!   clears it ([`crate::state::StateStore::clear_failures`]).
//!
//! [`LockoutPolicy::after_failure`] and [`LockoutPolicy::current`] are the
//! reference model of how a stored counter changes; the store performs the same
//! transition atomically in SQL and a differential test checks the two agree.

use std::time::Duration;

use serde::Serialize;

/// How many failures are tolerated and how attempts are slowed down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LockoutPolicy {
    /// The failure that reaches this count locks the key.
    pub max_failures: u32,
    /// How long a lock lasts; also the idle time after which a counter resets.
    pub lock_for: Duration,
    /// Delay imposed after the first failure.
    pub base_delay: Duration,
    /// Ceiling of the doubling delay.
    pub max_delay: Duration,
}

impl Default for LockoutPolicy {
    /// 10 failures, 30 minutes lock, delays 1 s doubling up to 16 s.
    fn default() -> Self {
        LockoutPolicy {
            max_failures: 10,
            lock_for: Duration::from_secs(30 * 60),
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(16),
        }
    }
}

/// What a key's failure counter says now, as the store reports it: expired
/// locks and stale counters already read as zero.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct FailureState {
    /// Failures counted since the last reset.
    pub failures: u32,
    /// Unix seconds until which the key is locked, if it is.
    pub locked_until: Option<i64>,
}

/// The raw counter as stored for one key (the input of the model).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FailureRecord {
    /// Failures counted since the last reset.
    pub failures: u32,
    /// Unix seconds of the last recorded failure.
    pub last_at: i64,
    /// Unix seconds until which the key is locked, once set.
    pub locked_until: Option<i64>,
}

/// What to do with the next authentication attempt for a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gate {
    /// Go ahead.
    Open,
    /// Wait this long before checking the attempt (and before answering).
    Delay(Duration),
    /// Refuse without checking anything until `until` (unix seconds).
    Locked {
        /// Unix seconds when the lock ends.
        until: i64,
    },
}

impl LockoutPolicy {
    /// The lock duration in whole seconds (at least 1).
    pub fn lock_secs(&self) -> i64 {
        i64::try_from(self.lock_for.as_secs()).unwrap_or(i64::MAX).max(1)
    }

    /// The delay imposed after `failures` failures: zero for none, then
    /// `base_delay × 2^(failures-1)`, capped at `max_delay`. Never decreases
    /// as `failures` grows.
    pub fn delay_for(&self, failures: u32) -> Duration {
        if failures == 0 {
            return Duration::ZERO;
        }
        let shift = (failures - 1).min(31);
        self.base_delay.saturating_mul(1u32 << shift).min(self.max_delay)
    }

    /// Decides the next attempt for a key in `state` at unix time `now`.
    pub fn decide(&self, state: &FailureState, now: i64) -> Gate {
        if let Some(until) = state.locked_until
            && until > now
        {
            return Gate::Locked { until };
        }
        match self.delay_for(state.failures) {
            d if d.is_zero() => Gate::Open,
            d => Gate::Delay(d),
        }
    }

    /// True when a stored counter no longer counts at `now`: its lock has
    /// ended, or it was never locked and its last failure is older than
    /// `lock_for`.
    pub fn is_reset(&self, rec: &FailureRecord, now: i64) -> bool {
        match rec.locked_until {
            Some(until) => until <= now,
            None => rec.last_at <= now.saturating_sub(self.lock_secs()),
        }
    }

    /// The model of one recorded failure: the counter after a failure at
    /// `now`, given the stored one (`None` if the key had none).
    pub fn after_failure(&self, prev: Option<&FailureRecord>, now: i64) -> FailureRecord {
        let prev = prev.filter(|r| !self.is_reset(r, now));
        let failures = prev.map_or(0, |r| r.failures).saturating_add(1);
        let locked_until = match prev.and_then(|r| r.locked_until) {
            Some(until) => Some(until),
            None if failures >= self.max_failures => Some(now.saturating_add(self.lock_secs())),
            None => None,
        };
        FailureRecord {
            failures,
            last_at: now,
            locked_until,
        }
    }

    /// What a stored counter means at `now` (zero once reset).
    pub fn current(&self, rec: Option<&FailureRecord>, now: i64) -> FailureState {
        match rec {
            Some(r) if !self.is_reset(r, now) => FailureState {
                failures: r.failures,
                locked_until: r.locked_until,
            },
            _ => FailureState::default(),
        }
    }
}

/// [`LockoutPolicy::decide`] with the default policy.
pub fn decide(state: &FailureState, now: i64) -> Gate {
    LockoutPolicy::default().decide(state, now)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_700_000_000;

    fn policies() -> Vec<LockoutPolicy> {
        let mut out = vec![LockoutPolicy::default()];
        for max_failures in [1, 2, 3, 5, 10, 25] {
            for lock_min in [1, 30, 120] {
                for (base, max) in [(1, 16), (0, 0), (2, 5), (1, 1)] {
                    out.push(LockoutPolicy {
                        max_failures,
                        lock_for: Duration::from_secs(lock_min * 60),
                        base_delay: Duration::from_secs(base),
                        max_delay: Duration::from_secs(max),
                    });
                }
            }
        }
        out
    }

    /// Records `n` failures one second apart from `start`.
    fn fail_n(p: &LockoutPolicy, n: u32, start: i64) -> Option<FailureRecord> {
        let mut rec = None;
        for i in 0..n {
            rec = Some(p.after_failure(rec.as_ref(), start + i64::from(i)));
        }
        rec
    }

    #[test]
    fn default_policy_is_pci_style() {
        let p = LockoutPolicy::default();
        assert_eq!(p.max_failures, 10);
        assert_eq!(p.lock_for, Duration::from_secs(1800));
        assert_eq!(p.delay_for(1), Duration::from_secs(1));
        assert_eq!(p.delay_for(2), Duration::from_secs(2));
        assert_eq!(p.delay_for(3), Duration::from_secs(4));
        assert_eq!(p.delay_for(4), Duration::from_secs(8));
        assert_eq!(p.delay_for(5), Duration::from_secs(16));
        assert_eq!(p.delay_for(9), Duration::from_secs(16));
        assert_eq!(p.delay_for(u32::MAX), Duration::from_secs(16));
        assert_eq!(decide(&FailureState::default(), T0), Gate::Open);
    }

    #[test]
    fn locks_exactly_at_the_max_failures_th_failure() {
        for p in policies() {
            let mut rec = None;
            for k in 1..=p.max_failures + 3 {
                let now = T0 + i64::from(k);
                let next = p.after_failure(rec.as_ref(), now);
                let state = p.current(Some(&next), now);
                let gate = p.decide(&state, now);
                if k < p.max_failures {
                    assert!(!matches!(gate, Gate::Locked { .. }), "{p:?}: locked after {k} failures");
                    assert_eq!(state.failures, k);
                } else {
                    assert!(matches!(gate, Gate::Locked { .. }), "{p:?}: open after {k} failures");
                }
                if k == p.max_failures {
                    assert_eq!(next.locked_until, Some(now + p.lock_secs()), "{p:?}");
                }
                rec = Some(next);
            }
        }
    }

    #[test]
    fn failures_while_locked_do_not_extend_the_lock() {
        for p in policies() {
            let rec = fail_n(&p, p.max_failures, T0).unwrap();
            let until = rec.locked_until.unwrap();
            let more = p.after_failure(Some(&rec), until - 1);
            assert_eq!(more.locked_until, Some(until), "{p:?}");
            assert_eq!(
                p.decide(&p.current(Some(&more), until - 1), until - 1),
                Gate::Locked { until }
            );
        }
    }

    #[test]
    fn the_lock_ends_after_lock_for_and_the_count_restarts() {
        for p in policies() {
            let rec = fail_n(&p, p.max_failures, T0).unwrap();
            let locked_at = rec.last_at;
            let until = locked_at + p.lock_secs();
            assert_eq!(rec.locked_until, Some(until));
            for now in [locked_at, locked_at + 1, until - 1] {
                assert_eq!(
                    p.decide(&p.current(Some(&rec), now), now),
                    Gate::Locked { until },
                    "{p:?}"
                );
            }
            for now in [until, until + 1, until + 86_400] {
                assert_eq!(p.current(Some(&rec), now), FailureState::default(), "{p:?}");
                assert_eq!(p.decide(&p.current(Some(&rec), now), now), Gate::Open, "{p:?}");
            }
            // The first failure after the lock counts as the first again.
            let again = p.after_failure(Some(&rec), until);
            assert_eq!(again.failures, 1);
            assert_eq!(again.locked_until.is_some(), p.max_failures == 1);
        }
    }

    #[test]
    fn a_stale_counter_resets_after_lock_for() {
        for p in policies().into_iter().filter(|p| p.max_failures > 2) {
            let rec = fail_n(&p, p.max_failures - 1, T0).unwrap();
            let stale_at = rec.last_at + p.lock_secs();
            assert_eq!(p.current(Some(&rec), stale_at - 1).failures, p.max_failures - 1);
            assert_eq!(p.current(Some(&rec), stale_at), FailureState::default());
            assert_eq!(p.after_failure(Some(&rec), stale_at).failures, 1);
            // One more failure just before going stale locks.
            assert!(p.after_failure(Some(&rec), stale_at - 1).locked_until.is_some());
        }
    }

    #[test]
    fn delays_never_decrease_as_failures_grow() {
        fn rank(g: Gate) -> Duration {
            match g {
                Gate::Open => Duration::ZERO,
                Gate::Delay(d) => d,
                Gate::Locked { .. } => Duration::MAX,
            }
        }
        for p in policies() {
            let mut last = Duration::ZERO;
            let mut rec = None;
            for k in 0..200u32 {
                assert!(p.delay_for(k) >= last, "{p:?}: delay_for({k}) decreased");
                assert!(p.delay_for(k) <= p.max_delay);
                last = p.delay_for(k);
            }
            // Through the model: the gate never loosens while failures pile up.
            let mut last_rank = Duration::ZERO;
            for k in 0..p.max_failures + 5 {
                let now = T0 + i64::from(k);
                if k > 0 {
                    rec = Some(p.after_failure(rec.as_ref(), now));
                }
                let r = rank(p.decide(&p.current(rec.as_ref(), now), now));
                assert!(r >= last_rank, "{p:?}: gate loosened at failure {k}");
                last_rank = r;
            }
        }
    }

    #[test]
    fn delay_doubles_from_base_to_max() {
        let p = LockoutPolicy::default();
        let gates: Vec<Gate> = (0..7)
            .map(|f| {
                p.decide(
                    &FailureState {
                        failures: f,
                        locked_until: None,
                    },
                    T0,
                )
            })
            .collect();
        let secs = |s| Gate::Delay(Duration::from_secs(s));
        assert_eq!(
            gates,
            vec![Gate::Open, secs(1), secs(2), secs(4), secs(8), secs(16), secs(16)]
        );
    }

    #[test]
    fn random_sequences_keep_the_invariants() {
        for p in policies() {
            for seed in 0..20u64 {
                let mut rec: Option<FailureRecord> = None;
                let mut now = T0;
                let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                for _ in 0..200 {
                    x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    now += [0, 1, 5, 60, 600, 1800, 3600][(x >> 33) as usize % 7];
                    let before = p.current(rec.as_ref(), now);
                    let next = p.after_failure(rec.as_ref(), now);
                    // Counter increments by one, or restarts at one.
                    assert!(next.failures == before.failures + 1 || next.failures == 1);
                    if next.failures == 1 {
                        assert_eq!(before, FailureState::default());
                    }
                    // Locked iff the count reached the limit.
                    assert_eq!(
                        next.locked_until.is_some(),
                        next.failures >= p.max_failures,
                        "{p:?} {next:?}"
                    );
                    if let Some(until) = next.locked_until {
                        assert!(until > now && until <= now + p.lock_secs());
                    }
                    rec = Some(next);
                }
            }
        }
    }
}
