//! Whether a new session may start: the gateway holds fewer than
//! `session.max_sessions`, and the client's address has not started more than
//! `session.max_new_per_address_per_minute` lately. Refused, the client gets 429
//! with a `Retry-After` (docs/security.md).
//!
//! A session costs memory for as long as it lives; without these bounds one client
//! starting sessions in a loop takes the gateway's memory.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::HttpResponse;
use actix_web::http::header::RETRY_AFTER;

use crate::actors::session::ClientKey;
use crate::config::SessionConfig;

/// Why a new session was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The gateway holds `session.max_sessions` sessions.
    AtCapacity,
    /// The client's address started too many sessions in the last minute.
    TooFast { retry_after: Duration },
}

impl Refusal {
    /// 429 with a `Retry-After` and a JSON `detail`.
    pub fn response(&self) -> HttpResponse {
        let (detail, retry_after) = match self {
            Refusal::AtCapacity => (
                "parlor is at its limit of sessions; try again shortly",
                Duration::from_secs(5),
            ),
            Refusal::TooFast { retry_after } => (
                "too many new sessions from this address; try again shortly",
                *retry_after,
            ),
        };
        HttpResponse::TooManyRequests()
            .insert_header((RETRY_AFTER, retry_after.as_secs().max(1).to_string()))
            .json(serde_json::json!({ "detail": detail }))
    }
}

pub struct Admission {
    /// Sessions in this gateway's memory, kept by the session registry.
    live_sessions: Arc<AtomicUsize>,
    max_sessions: usize,
    /// `None`: no limit per address.
    per_address: Option<Mutex<AddressRates>>,
    limit_loopback: bool,
}

impl Admission {
    pub fn new(config: &SessionConfig, live_sessions: Arc<AtomicUsize>) -> Self {
        let per_minute = config.max_new_per_address_per_minute;
        Self {
            live_sessions,
            max_sessions: config.max_sessions,
            per_address: (per_minute > 0).then(|| Mutex::new(AddressRates::new(per_minute))),
            limit_loopback: config.limit_loopback,
        }
    }

    /// Who a client at `peer` counts as for the limits per client: its address,
    /// unless it is a loopback one and `session.limit_loopback` is off.
    pub fn client_key(&self, peer: Option<IpAddr>) -> Option<ClientKey> {
        let peer = peer?;
        (self.limit_loopback || !peer.is_loopback()).then_some(ClientKey::Address(peer))
    }

    /// Whether the gateway has room for one more session in memory.
    pub fn has_room(&self) -> Result<(), Refusal> {
        if self.live_sessions.load(Ordering::Relaxed) >= self.max_sessions {
            return Err(Refusal::AtCapacity);
        }
        Ok(())
    }

    /// Whether a client at `peer` may start a new session now; counts it if so.
    /// (Bringing back a session of its own is not a new one.)
    pub fn admit_new(&self, peer: Option<IpAddr>) -> Result<(), Refusal> {
        self.has_room()?;
        let Some(rates) = &self.per_address else {
            return Ok(());
        };
        let Some(peer) = peer else {
            return Ok(()); // not a TCP client (tests on a socket pair)
        };
        if peer.is_loopback() && !self.limit_loopback {
            // The load tests and a reverse proxy on the same machine come from here.
            return Ok(());
        }
        let mut rates = rates
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        rates.take(peer, Instant::now())
    }
}

/// A token bucket per address: `per_minute` tokens, refilled evenly over a
/// minute; a new session takes one.
struct AddressRates {
    per_minute: f64,
    buckets: HashMap<IpAddr, Bucket>,
    last_sweep: Option<Instant>,
}

struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl AddressRates {
    fn new(per_minute: u32) -> Self {
        Self {
            per_minute: f64::from(per_minute),
            buckets: HashMap::new(),
            last_sweep: None,
        }
    }

    fn take(&mut self, peer: IpAddr, now: Instant) -> Result<(), Refusal> {
        self.sweep(now);
        let per_second = self.per_minute / 60.0;
        let full = self.per_minute;
        let bucket = self.buckets.entry(peer).or_insert(Bucket {
            tokens: full,
            updated: now,
        });
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * per_second).min(full);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Ok(());
        }
        let wait = (1.0 - bucket.tokens) / per_second;
        Err(Refusal::TooFast {
            retry_after: Duration::from_secs_f64(wait.ceil()),
        })
    }

    /// Forgets, once a minute, the addresses whose buckets have filled up again:
    /// they are as good as new, and the map stays as small as the last minute's
    /// clients.
    fn sweep(&mut self, now: Instant) {
        const EVERY: Duration = Duration::from_secs(60);
        if self
            .last_sweep
            .is_some_and(|last| now.saturating_duration_since(last) < EVERY)
        {
            return;
        }
        self.last_sweep = Some(now);
        self.buckets
            .retain(|_, bucket| now.saturating_duration_since(bucket.updated) < EVERY);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(max_sessions: usize, per_minute: u32, limit_loopback: bool) -> SessionConfig {
        SessionConfig {
            max_sessions,
            max_new_per_address_per_minute: per_minute,
            limit_loopback,
            ..SessionConfig::default()
        }
    }

    const CLIENT: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::new(203, 0, 113, 7)));
    const LOOPBACK: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));

    #[test]
    fn the_session_limit_counts_live_sessions() {
        let live = Arc::new(AtomicUsize::new(1));
        let admission = Admission::new(&config(2, 0, false), live.clone());
        assert_eq!(admission.admit_new(CLIENT), Ok(()));
        live.store(2, Ordering::Relaxed);
        assert_eq!(admission.admit_new(LOOPBACK), Err(Refusal::AtCapacity));
        live.store(1, Ordering::Relaxed);
        assert_eq!(admission.admit_new(CLIENT), Ok(()));
    }

    #[test]
    fn an_address_gets_its_rate_and_others_are_unaffected() {
        let admission = Admission::new(&config(100, 3, false), Arc::default());
        for _ in 0..3 {
            assert_eq!(admission.admit_new(CLIENT), Ok(()));
        }
        assert!(matches!(
            admission.admit_new(CLIENT),
            Err(Refusal::TooFast { retry_after }) if retry_after == Duration::from_secs(20)
        ));
        let other = Some("198.51.100.1".parse().unwrap());
        assert_eq!(admission.admit_new(other), Ok(()));
    }

    #[test]
    fn loopback_is_limited_only_when_asked() {
        let free = Admission::new(&config(100, 1, false), Arc::default());
        for _ in 0..10 {
            assert_eq!(free.admit_new(LOOPBACK), Ok(()));
        }
        let limited = Admission::new(&config(100, 1, true), Arc::default());
        assert_eq!(limited.admit_new(LOOPBACK), Ok(()));
        assert!(limited.admit_new(LOOPBACK).is_err());
    }

    #[test]
    fn buckets_refill_over_the_minute_and_old_ones_are_swept() {
        let mut rates = AddressRates::new(60);
        let start = Instant::now();
        let peer = CLIENT.unwrap();
        for _ in 0..60 {
            assert_eq!(rates.take(peer, start), Ok(()));
        }
        assert!(rates.take(peer, start).is_err());
        assert_eq!(rates.take(peer, start + Duration::from_secs(1)), Ok(()));
        let later = start + Duration::from_secs(200);
        assert_eq!(rates.take("198.51.100.1".parse().unwrap(), later), Ok(()));
        assert_eq!(rates.buckets.len(), 1, "the old address was forgotten");
    }
}
