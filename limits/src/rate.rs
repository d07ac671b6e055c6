//! Token buckets per tenant, local to one process.
//!
//! A bucket holds up to `burst` tokens and refills at `rate` tokens per
//! second; a request taking `n` tokens passes when `n` are there, and
//! otherwise takes nothing and learns how long until they would be. A
//! bucket left alone until it is full again is the same as a new one, so
//! idle tenants are forgotten; the map never holds more than its capacity.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// Default for how many tenants' buckets one limiter keeps.
pub const DEFAULT_MAX_TENANTS: usize = 100_000;

/// One token bucket.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    tokens: f64,
    last: Instant,
    rate: f64,
    burst: f64,
}

/// The answer to a request for tokens.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Decision {
    Allowed,
    /// Not enough tokens; none were taken. `retry_after` is how long until
    /// there will be (for a request larger than the burst, until the
    /// bucket is full: it can never pass whole).
    Denied {
        retry_after: Duration,
        exceeds_burst: bool,
    },
}

impl Decision {
    pub fn allowed(&self) -> bool {
        matches!(self, Decision::Allowed)
    }
}

impl Bucket {
    /// A full bucket.
    pub fn new(rate: f64, burst: u64, now: Instant) -> Self {
        Bucket {
            tokens: burst as f64,
            last: now,
            rate,
            burst: burst as f64,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.last = self.last.max(now);
    }

    /// Takes `n` tokens if there are; `rate` and `burst` are the tenant's
    /// current limits (they may have changed since the last call). A rate
    /// of 0 (or less) is no limit.
    pub fn take(&mut self, rate: f64, burst: u64, n: u64, now: Instant) -> Decision {
        if rate <= 0.0 || !rate.is_finite() {
            return Decision::Allowed;
        }
        self.refill(now);
        let burst = burst as f64;
        if burst != self.burst || rate != self.rate {
            // A raised burst is headroom at once; a lowered one caps.
            if burst > self.burst {
                self.tokens += burst - self.burst;
            }
            self.tokens = self.tokens.min(burst);
            self.burst = burst;
            self.rate = rate;
        }
        let n = n as f64;
        if n <= self.tokens {
            self.tokens -= n;
            return Decision::Allowed;
        }
        let exceeds_burst = n > burst;
        let missing = if exceeds_burst {
            burst - self.tokens
        } else {
            n - self.tokens
        };
        Decision::Denied {
            retry_after: Duration::from_secs_f64((missing / rate).clamp(0.0, 86_400.0)),
            exceeds_burst,
        }
    }

    /// Whether the bucket has refilled completely by `now` (then it is the
    /// same as a new one).
    fn full_at(&self, now: Instant) -> bool {
        if self.rate <= 0.0 {
            return true;
        }
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens + elapsed * self.rate >= self.burst
    }
}

/// Token buckets by tenant, at most `max_tenants` of them.
#[derive(Debug)]
pub struct RateLimiter {
    buckets: Mutex<HashMap<String, Bucket>>,
    max_tenants: usize,
}

impl Default for RateLimiter {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_TENANTS)
    }
}

impl RateLimiter {
    pub fn new(max_tenants: usize) -> Self {
        RateLimiter {
            buckets: Mutex::new(HashMap::new()),
            max_tenants: max_tenants.max(1),
        }
    }

    /// Takes `n` tokens from `tenant`'s bucket.
    pub fn take(&self, tenant: &str, rate: f64, burst: u64, n: u64, now: Instant) -> Decision {
        if rate <= 0.0 || !rate.is_finite() {
            return Decision::Allowed;
        }
        let mut buckets = self.buckets.lock();
        if let Some(b) = buckets.get_mut(tenant) {
            return b.take(rate, burst, n, now);
        }
        if buckets.len() >= self.max_tenants {
            evict(&mut buckets, self.max_tenants, now);
        }
        let mut b = Bucket::new(rate, burst, now);
        let d = b.take(rate, burst, n, now);
        buckets.insert(tenant.to_owned(), b);
        d
    }

    /// Returns `n` tokens taken by a request that was then not carried out
    /// (never above the burst).
    pub fn give_back(&self, tenant: &str, n: u64) {
        if let Some(b) = self.buckets.lock().get_mut(tenant) {
            b.tokens = (b.tokens + n as f64).min(b.burst);
        }
    }

    /// Buckets held now.
    pub fn len(&self) -> usize {
        self.buckets.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Makes room: drops every full bucket (no information lost) and, when
/// that is not enough, the least recently used tenth.
fn evict(buckets: &mut HashMap<String, Bucket>, max: usize, now: Instant) {
    buckets.retain(|_, b| !b.full_at(now));
    if buckets.len() < max {
        return;
    }
    let mut lasts: Vec<Instant> = buckets.values().map(|b| b.last).collect();
    let k = (max / 10).max(1).min(lasts.len() - 1);
    let (_, cut, _) = lasts.select_nth_unstable(k);
    let cut = *cut;
    buckets.retain(|_, b| b.last > cut);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_math() {
        let t0 = Instant::now();
        let mut b = Bucket::new(10.0, 100, t0);
        assert!(b.take(10.0, 100, 100, t0).allowed());
        // Empty: 30 tokens need 3s.
        match b.take(10.0, 100, 30, t0) {
            Decision::Denied {
                retry_after,
                exceeds_burst,
            } => {
                assert_eq!(retry_after, Duration::from_secs(3));
                assert!(!exceeds_burst);
            }
            d => panic!("{d:?}"),
        }
        // Denied requests take nothing: after 2s there are 20.
        let t2 = t0 + Duration::from_secs(2);
        assert!(!b.take(10.0, 100, 30, t2).allowed());
        assert!(b.take(10.0, 100, 20, t2).allowed());
        // Refill caps at the burst.
        let t100 = t0 + Duration::from_secs(100);
        assert!(b.take(10.0, 100, 100, t100).allowed());
        assert!(!b.take(10.0, 100, 1, t100).allowed());
    }

    #[test]
    fn larger_than_burst_never_passes() {
        let t0 = Instant::now();
        let mut b = Bucket::new(10.0, 100, t0);
        match b.take(10.0, 100, 101, t0) {
            Decision::Denied {
                retry_after,
                exceeds_burst,
            } => {
                assert!(exceeds_burst);
                assert_eq!(retry_after, Duration::ZERO, "already full");
            }
            d => panic!("{d:?}"),
        }
        assert!(b.take(10.0, 100, 100, t0).allowed(), "nothing was taken");
    }

    #[test]
    fn zero_rate_is_unlimited_and_limits_change() {
        let t0 = Instant::now();
        let mut b = Bucket::new(1.0, 1, t0);
        assert!(b.take(0.0, 0, u64::MAX, t0).allowed());
        assert!(b.take(1.0, 1, 1, t0).allowed());
        assert!(!b.take(1.0, 1, 1, t0).allowed());
        // Raised limits take effect at once: the extra burst is there now.
        let t1 = t0 + Duration::from_secs(1);
        assert!(b.take(1000.0, 5000, 5000, t1).allowed());
        assert!(!b.take(1000.0, 5000, 1, t1).allowed());
        let t2 = t1 + Duration::from_secs(10);
        assert!(b.take(1000.0, 5000, 5000, t2).allowed());
        // Lowered burst caps what is there.
        let t3 = t2 + Duration::from_secs(100);
        assert!(!b.take(1.0, 2, 3, t3).allowed());
        assert!(b.take(1.0, 2, 2, t3).allowed());
    }

    #[test]
    fn limiter_is_per_tenant_and_bounded() {
        let l = RateLimiter::new(10);
        let t0 = Instant::now();
        assert!(l.take("a", 1.0, 5, 5, t0).allowed());
        assert!(!l.take("a", 1.0, 5, 1, t0).allowed());
        assert!(l.take("b", 1.0, 5, 5, t0).allowed());
        // Unlimited tenants hold no bucket.
        assert!(l.take("c", 0.0, 0, 1, t0).allowed());
        assert_eq!(l.len(), 2);
        // Many tenants, each with a drained bucket: never more than the cap.
        for i in 0..1000 {
            let t = t0 + Duration::from_millis(i);
            l.take(&format!("t{i}"), 1.0, 5, 5, t);
            assert!(l.len() <= 10);
        }
        // Full (idle) buckets are dropped first.
        let l = RateLimiter::new(3);
        l.take("x", 1000.0, 1, 1, t0);
        l.take("y", 1.0, 10, 10, t0);
        l.take("z", 1.0, 10, 10, t0);
        let later = t0 + Duration::from_secs(1);
        l.take("w", 1.0, 10, 1, later);
        let b = l.buckets.lock();
        assert!(!b.contains_key("x"), "x had refilled");
        assert!(b.contains_key("y") && b.contains_key("z") && b.contains_key("w"));
    }

    #[test]
    fn give_back_restores_tokens() {
        let l = RateLimiter::new(10);
        let t0 = Instant::now();
        assert!(l.take("a", 1.0, 10, 10, t0).allowed());
        l.give_back("a", 4);
        assert!(l.take("a", 1.0, 10, 4, t0).allowed());
        assert!(!l.take("a", 1.0, 10, 1, t0).allowed());
    }
}
