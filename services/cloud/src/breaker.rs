//! A circuit breaker: after `failure_threshold` consecutive failed calls the
//! circuit opens and calls fail fast for `cooldown`; then one trial call is let
//! through (half-open) and its outcome closes or re-opens the circuit. This
//! keeps a dead cloud link from adding a full retry budget of latency to every
//! fallback.

use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

#[derive(Debug)]
struct Inner {
    failures: u32,
    opened_at: Option<Instant>,
    trial_in_flight: bool,
}

#[derive(Debug)]
pub struct CircuitBreaker {
    failure_threshold: u32,
    cooldown: Duration,
    inner: Mutex<Inner>,
}

impl CircuitBreaker {
    pub fn new(failure_threshold: u32, cooldown: Duration) -> Self {
        Self { failure_threshold: failure_threshold.max(1), cooldown, inner: Mutex::new(Inner { failures: 0, opened_at: None, trial_in_flight: false }) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn state(&self) -> BreakerState {
        let i = self.lock();
        match i.opened_at {
            None => BreakerState::Closed,
            Some(t) if t.elapsed() >= self.cooldown => BreakerState::HalfOpen,
            Some(_) => BreakerState::Open,
        }
    }

    /// May a call go out now? In half-open state only one trial at a time.
    pub fn allow(&self) -> bool {
        let mut i = self.lock();
        match i.opened_at {
            None => true,
            Some(t) if t.elapsed() >= self.cooldown && !i.trial_in_flight => {
                i.trial_in_flight = true;
                true
            }
            Some(_) => false,
        }
    }

    pub fn record_success(&self) {
        let mut i = self.lock();
        if i.opened_at.is_some() {
            tracing::info!("cloud circuit closed: trial call succeeded");
        }
        *i = Inner { failures: 0, opened_at: None, trial_in_flight: false };
    }

    pub fn record_failure(&self) {
        let mut i = self.lock();
        i.failures += 1;
        if i.opened_at.is_some() {
            // A failed trial re-opens for another cooldown.
            i.opened_at = Some(Instant::now());
            i.trial_in_flight = false;
        } else if i.failures >= self.failure_threshold {
            tracing::warn!(failures = i.failures, cooldown = ?self.cooldown, "cloud circuit opened");
            i.opened_at = Some(Instant::now());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_consecutive_failures_then_half_opens_for_one_trial() {
        let b = CircuitBreaker::new(3, Duration::from_millis(50));
        for _ in 0..2 {
            assert!(b.allow());
            b.record_failure();
        }
        b.record_success(); // resets the count
        for _ in 0..3 {
            assert!(b.allow());
            b.record_failure();
        }
        assert_eq!(b.state(), BreakerState::Open);
        assert!(!b.allow());
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert!(b.allow(), "one trial");
        assert!(!b.allow(), "only one trial at a time");
        b.record_failure();
        assert_eq!(b.state(), BreakerState::Open);
        std::thread::sleep(Duration::from_millis(60));
        assert!(b.allow());
        b.record_success();
        assert_eq!(b.state(), BreakerState::Closed);
        assert!(b.allow() && b.allow());
    }
}
