//! Rate limits per server (messages/s and bytes/s), shared by all users of a run, for providers
//! that throttle. A pacing scheduler: each batch reserves its slot on a timeline and waits until
//! the slot starts, so the average rate never exceeds the limit and no tokens are wasted.

use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// Limits for one server.
#[derive(Debug)]
pub struct RateLimiter {
    messages_per_sec: Option<f64>,
    bytes_per_sec: Option<f64>,
    next: Mutex<Option<Instant>>,
}

impl RateLimiter {
    /// `None` when neither limit is set.
    pub fn new(messages_per_sec: Option<f64>, bytes_per_sec: Option<f64>) -> Option<RateLimiter> {
        if messages_per_sec.is_none() && bytes_per_sec.is_none() {
            return None;
        }
        Some(RateLimiter {
            messages_per_sec,
            bytes_per_sec,
            next: Mutex::new(None),
        })
    }

    /// How long a batch occupies the timeline.
    pub fn cost(&self, messages: u64, bytes: u64) -> Duration {
        let m = self.messages_per_sec.map_or(0.0, |r| messages as f64 / r);
        let b = self.bytes_per_sec.map_or(0.0, |r| bytes as f64 / r);
        Duration::from_secs_f64(m.max(b))
    }

    /// Waits until this batch may go.
    pub async fn take(&self, messages: u64, bytes: u64) {
        let start = {
            let mut next = self.next.lock().await;
            let now = Instant::now();
            let start = next.map_or(now, |n| n.max(now));
            *next = Some(start + self.cost(messages, bytes));
            start
        };
        tokio::time::sleep_until(start.into()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cost_is_the_tighter_limit() {
        let r = RateLimiter::new(Some(10.0), Some(1000.0)).unwrap();
        assert_eq!(r.cost(5, 100), Duration::from_millis(500));
        assert_eq!(r.cost(1, 5000), Duration::from_secs(5));
        assert!(RateLimiter::new(None, None).is_none());
    }
}
