//! The public keys of a JWKS (`auth.jwks_url`). Fetched when first needed and
//! kept; fetched again when they are an hour old, or when a token names a key they
//! lack (the identity provider rotated its keys) — at most once a minute, so that
//! tokens with made-up key ids cannot make the gateway hammer the provider.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context as _;
use jsonwebtoken::jwk::{Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey};
use reqwest::Url;
use serde::Deserialize;
use tokio::time::Instant;

use super::AuthError;

/// The least time between two fetches.
const REFETCH_GAP: Duration = Duration::from_secs(60);
/// Keys older than this are fetched again (a key the provider withdrew stops
/// working within it).
const MAX_AGE: Duration = Duration::from_secs(3_600);
/// The longest a fetch may take: a token waits for it.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

pub struct JwksKeys {
    url: Url,
    client: reqwest::Client,
    current: RwLock<Arc<KeySet>>,
    /// Held while fetching, so one fetch runs at a time; when the last one began.
    fetching: tokio::sync::Mutex<Option<Instant>>,
    refetch_gap: Duration,
}

/// The keys of one fetch.
#[derive(Default)]
struct KeySet {
    keys: Vec<KnownKey>,
    /// When they were fetched; `None` before the first fetch succeeded.
    fetched: Option<Instant>,
}

struct KnownKey {
    kid: Option<String>,
    /// The `alg` the JWKS gives the key, if it does: then it signs with no other.
    algorithm: Option<KeyAlgorithm>,
    key: Arc<DecodingKey>,
}

/// A JWKS document, its keys read one by one: one key parlor cannot use (another
/// type, a newer algorithm) must not make the others unusable.
#[derive(Deserialize)]
struct JwksDocument {
    keys: Vec<serde_json::Value>,
}

impl JwksKeys {
    pub fn new(url: Url) -> anyhow::Result<Self> {
        Self::with_refetch_gap(url, REFETCH_GAP)
    }

    /// With another least time between fetches (tests).
    pub fn with_refetch_gap(url: Url, refetch_gap: Duration) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .build()
            .context("cannot build the HTTP client for auth.jwks_url")?;
        Ok(Self {
            url,
            client,
            current: RwLock::default(),
            fetching: tokio::sync::Mutex::new(None),
            refetch_gap,
        })
    }

    /// The key a token signed with `algorithm` names (`kid`; a token naming none
    /// is checked with the one key that fits, if there is exactly one).
    pub async fn key_for(
        &self,
        kid: Option<&str>,
        algorithm: Algorithm,
    ) -> Result<Arc<DecodingKey>, AuthError> {
        let keys = self.keys();
        let fresh = keys.fetched.is_some_and(|at| at.elapsed() < MAX_AGE);
        if fresh && let Some(key) = keys.find(kid, algorithm) {
            return Ok(key);
        }
        self.refetch().await;
        let keys = self.keys();
        if keys.fetched.is_none() {
            let why = "the keys to check tokens cannot be fetched right now";
            return Err(AuthError::Unavailable(why.into()));
        }
        keys.find(kid, algorithm).ok_or_else(|| match kid {
            Some(_) => AuthError::invalid("the token's key (kid) is not one of the issuer's keys"),
            None => AuthError::invalid("the token names no key (kid)"),
        })
    }

    fn keys(&self) -> Arc<KeySet> {
        self.current.read().expect("the key set lock").clone()
    }

    /// Fetches the keys, unless a fetch began less than the gap ago (then the
    /// keys are as new as they may be). Failing, the keys held are kept.
    async fn refetch(&self) {
        let mut last = self.fetching.lock().await;
        if last.is_some_and(|at| at.elapsed() < self.refetch_gap) {
            return;
        }
        *last = Some(Instant::now());
        match self.fetch().await {
            Ok(keys) => {
                tracing::info!(keys = keys.keys.len(), "fetched the keys of auth.jwks_url");
                *self.current.write().expect("the key set lock") = Arc::new(keys);
            }
            Err(error) => {
                tracing::warn!(
                    error = format!("{error:#}"),
                    "cannot fetch the keys of auth.jwks_url"
                );
            }
        }
    }

    async fn fetch(&self) -> anyhow::Result<KeySet> {
        let document: JwksDocument = self
            .client
            .get(self.url.clone())
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .context("the request failed")?
            .json()
            .await
            .context("the answer is not a JWKS")?;
        let keys = document.keys.into_iter().filter_map(usable_key).collect();
        Ok(KeySet {
            keys,
            fetched: Some(Instant::now()),
        })
    }
}

/// A JWKS entry as a key that can check signatures: an RSA or EC public key
/// meant for signatures. Others are left out.
fn usable_key(entry: serde_json::Value) -> Option<KnownKey> {
    let jwk: Jwk = serde_json::from_value(entry).ok()?;
    if matches!(jwk.common.public_key_use, Some(ref usage) if *usage != PublicKeyUse::Signature) {
        return None;
    }
    let key = DecodingKey::from_jwk(&jwk).ok()?;
    if !matches!(key.family(), AlgorithmFamily::Rsa | AlgorithmFamily::Ec) {
        return None;
    }
    Some(KnownKey {
        kid: jwk.common.key_id,
        algorithm: jwk.common.key_algorithm,
        key: Arc::new(key),
    })
}

impl KeySet {
    fn find(&self, kid: Option<&str>, algorithm: Algorithm) -> Option<Arc<DecodingKey>> {
        let fits = |known: &&KnownKey| {
            known.key.family() == algorithm.family()
                && known
                    .algorithm
                    .is_none_or(|own| own == KeyAlgorithm::from(algorithm))
        };
        let mut fitting = self.keys.iter().filter(fits);
        let found = match kid {
            Some(kid) => fitting.find(|known| known.kid.as_deref() == Some(kid)),
            None => match (fitting.next(), fitting.next()) {
                (Some(only), None) => Some(only),
                _ => None,
            },
        };
        found.map(|known| known.key.clone())
    }
}
