//! Token buckets (per-connection message and byte rates, per-key REST rates) and the
//! connection budget per node and per user.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use parking_lot::Mutex;

use super::{LimitKind, Limits};

/// Most REST callers tracked at once; beyond it, idle (refilled) buckets are forgotten.
const MAX_TRACKED_CALLERS: usize = 10_000;

/// A token bucket: `rate` tokens per second, holding at most `burst`.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate: u64, burst: u64) -> Self {
        let burst = burst.max(rate).max(1) as f64;
        TokenBucket {
            rate: rate as f64,
            burst,
            tokens: burst,
            last: Instant::now(),
        }
    }

    /// Takes `n` tokens if the bucket holds them.
    pub fn try_take(&mut self, n: u64) -> bool {
        self.refill(Instant::now());
        let n = n as f64;
        if self.tokens >= n {
            self.tokens -= n;
            true
        } else {
            false
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.last = now;
    }

    fn is_full(&mut self, now: Instant) -> bool {
        self.refill(now);
        self.tokens >= self.burst
    }
}

/// The rate limits of one client connection (`None`: unlimited).
#[derive(Debug, Clone)]
pub struct ConnectionRate {
    messages: Option<TokenBucket>,
    bytes: Option<TokenBucket>,
}

impl ConnectionRate {
    /// Buckets from the configured limits.
    pub fn new(limits: &Limits) -> Self {
        ConnectionRate {
            messages: (limits.messages_per_sec > 0)
                .then(|| TokenBucket::new(limits.messages_per_sec, limits.message_burst)),
            bytes: (limits.bytes_per_sec > 0)
                .then(|| TokenBucket::new(limits.bytes_per_sec, limits.byte_burst)),
        }
    }

    /// Accounts one received frame of `len` bytes; the error names the limit exceeded.
    pub fn check(&mut self, len: usize) -> Result<(), LimitKind> {
        if let Some(b) = &mut self.messages
            && !b.try_take(1)
        {
            return Err(LimitKind::MessageRate);
        }
        if let Some(b) = &mut self.bytes
            && !b.try_take(len as u64)
        {
            return Err(LimitKind::ByteRate);
        }
        Ok(())
    }
}

/// Who a REST call is counted against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RestCaller {
    /// An authenticated call: the access key that signed its token (position, primary first).
    /// Every backend holding that key shares its budget, wherever it calls from.
    Key(usize),
    /// A call whose token failed verification: its source address, so guessing tokens or
    /// flooding with garbage costs the sender and no key's budget.
    Address(IpAddr),
}

/// REST rate limits: one token bucket per access key, and one per address for calls that fail
/// authentication.
pub struct RestRate {
    rate: u64,
    burst: u64,
    buckets: Mutex<HashMap<RestCaller, TokenBucket>>,
}

impl RestRate {
    /// Limits from the configuration; `rest_requests_per_sec = 0` disables them.
    pub fn new(limits: &Limits) -> Self {
        RestRate {
            rate: limits.rest_requests_per_sec,
            burst: limits.rest_burst,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Accounts one request from `caller`; `Err` carries how long to wait before retrying.
    pub fn check(&self, caller: RestCaller) -> Result<(), Duration> {
        if self.rate == 0 {
            return Ok(());
        }
        let mut buckets = self.buckets.lock();
        if buckets.len() >= MAX_TRACKED_CALLERS && !buckets.contains_key(&caller) {
            let now = Instant::now();
            buckets.retain(|_, b| !b.is_full(now));
        }
        let bucket = buckets
            .entry(caller)
            .or_insert_with(|| TokenBucket::new(self.rate, self.burst));
        if bucket.try_take(1) {
            Ok(())
        } else {
            LimitKind::RestRate.count();
            Err(Duration::from_secs(1))
        }
    }
}

/// Counts client connections per node and per user, and refuses those over the limits.
pub struct ConnectionBudget {
    max_total: usize,
    max_per_user: usize,
    total: Arc<AtomicUsize>,
    per_user: Arc<DashMap<Arc<str>, usize>>,
}

/// A place in the [`ConnectionBudget`], given back on drop.
pub struct Admission {
    total: Arc<AtomicUsize>,
    per_user: Arc<DashMap<Arc<str>, usize>>,
    user: Option<Arc<str>>,
}

impl ConnectionBudget {
    /// A budget from the configuration (0: unlimited).
    pub fn new(limits: &Limits) -> Self {
        ConnectionBudget {
            max_total: limits.max_connections,
            max_per_user: limits.max_connections_per_user,
            total: Arc::new(AtomicUsize::new(0)),
            per_user: Arc::new(DashMap::new()),
        }
    }

    /// Admits a connection of `user`, or names the limit it would exceed (and counts it).
    pub fn admit(&self, user: Option<&str>) -> Result<Admission, LimitKind> {
        let prev = self.total.fetch_add(1, Ordering::AcqRel);
        if self.max_total > 0 && prev >= self.max_total {
            self.total.fetch_sub(1, Ordering::AcqRel);
            LimitKind::NodeConnections.count();
            return Err(LimitKind::NodeConnections);
        }
        let user = match user.filter(|u| !u.is_empty()) {
            Some(u) => u,
            None => {
                return Ok(Admission {
                    total: self.total.clone(),
                    per_user: self.per_user.clone(),
                    user: None,
                });
            }
        };
        let key: Arc<str> = Arc::from(user);
        {
            let mut n = self.per_user.entry(key.clone()).or_insert(0);
            if self.max_per_user > 0 && *n >= self.max_per_user {
                drop(n);
                self.per_user.remove_if(&key, |_, n| *n == 0);
                self.total.fetch_sub(1, Ordering::AcqRel);
                LimitKind::UserConnections.count();
                return Err(LimitKind::UserConnections);
            }
            *n += 1;
        }
        Ok(Admission {
            total: self.total.clone(),
            per_user: self.per_user.clone(),
            user: Some(key),
        })
    }

    /// Connections admitted and not yet given back.
    #[cfg(test)]
    pub fn admitted(&self) -> usize {
        self.total.load(Ordering::Acquire)
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.total.fetch_sub(1, Ordering::AcqRel);
        if let Some(user) = &self.user {
            if let Some(mut n) = self.per_user.get_mut(user) {
                *n = n.saturating_sub(1);
            }
            self.per_user.remove_if(user, |_, n| *n == 0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            messages_per_sec: 2,
            message_burst: 3,
            bytes_per_sec: 100,
            byte_burst: 100,
            max_connections: 2,
            max_connections_per_user: 1,
            rest_requests_per_sec: 1,
            rest_burst: 2,
            ..Limits::default()
        }
    }

    #[test]
    fn bucket_allows_the_burst_then_refuses() {
        let mut r = ConnectionRate::new(&limits());
        assert!((0..3).all(|_| r.check(1).is_ok()));
        assert_eq!(r.check(1), Err(LimitKind::MessageRate));
        let mut r = ConnectionRate::new(&limits());
        assert_eq!(r.check(101), Err(LimitKind::ByteRate));
    }

    #[test]
    fn zero_means_unlimited() {
        let mut r = ConnectionRate::new(&Limits {
            messages_per_sec: 0,
            bytes_per_sec: 0,
            ..Limits::default()
        });
        assert!((0..100_000).all(|_| r.check(1 << 20).is_ok()));
    }

    #[test]
    fn budget_counts_per_node_and_per_user() {
        let b = ConnectionBudget::new(&limits());
        let a = b.admit(Some("u")).unwrap();
        assert_eq!(b.admit(Some("u")).err(), Some(LimitKind::UserConnections));
        let c = b.admit(None).unwrap();
        assert_eq!(b.admit(Some("v")).err(), Some(LimitKind::NodeConnections));
        drop(a);
        drop(c);
        assert_eq!(b.admitted(), 0);
        assert!(b.per_user.is_empty());
        let _again = b.admit(Some("u")).unwrap();
    }

    #[test]
    fn rest_rate_is_per_key_and_per_failing_address() {
        let r = RestRate::new(&limits());
        let (k0, k1) = (RestCaller::Key(0), RestCaller::Key(1));
        assert!(r.check(k0).is_ok() && r.check(k0).is_ok());
        assert!(r.check(k0).is_err());
        assert!(r.check(k1).is_ok());
        let a = RestCaller::Address([127, 0, 0, 1].into());
        let b = RestCaller::Address([127, 0, 0, 2].into());
        assert!(r.check(a).is_ok() && r.check(a).is_ok());
        assert!(r.check(a).is_err());
        assert!(r.check(b).is_ok());
    }
}
