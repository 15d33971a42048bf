//! Who a proxy's token says it is: Kubernetes' TokenReview in a cluster, the
//! topology file's `tokens` locally.

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use linkerd_discovery::Topology;
use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};
use tokio::sync::watch;

/// The audience proxies' projected tokens are minted for.
pub const AUDIENCE: &str = "identity.l5d.io";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceAccount {
    pub namespace: String,
    pub name: String,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The token proves nothing: refused.
    #[error("{0}")]
    Invalid(String),
    /// It could not be checked now: the proxy should retry.
    #[error("{0}")]
    Unavailable(String),
}

#[tonic::async_trait]
pub trait Validate: Send + Sync + 'static {
    async fn validate(&self, token: &[u8]) -> Result<ServiceAccount, TokenError>;
}

/// Tokens listed in the local topology file.
pub struct LocalTokens(watch::Receiver<Arc<Topology>>);

impl LocalTokens {
    pub fn new(topology: watch::Receiver<Arc<Topology>>) -> Self {
        Self(topology)
    }
}

#[tonic::async_trait]
impl Validate for LocalTokens {
    async fn validate(&self, token: &[u8]) -> Result<ServiceAccount, TokenError> {
        let token = std::str::from_utf8(token)
            .map_err(|_| TokenError::Invalid("not UTF-8".into()))?
            .trim();
        self.0
            .borrow()
            .tokens
            .iter()
            .find(|t| t.token == token)
            .map(|t| ServiceAccount {
                namespace: t.namespace.clone(),
                name: t.service_account.clone(),
            })
            .ok_or_else(|| TokenError::Invalid("unknown token".into()))
    }
}

/// Asks the Kubernetes API, with a TokenReview for Linkerd's audience.
///
/// Bounded, as everything a proxy can trigger must be: at most
/// `MAX_REVIEWS` reviews in flight (more wait their turn within the
/// timeout), each given `REVIEW_TIMEOUT` in all, so an API server that
/// hangs makes `Certify` fail as unavailable (the proxy retries) rather than
/// pile up. A token the API authenticated is remembered, by its SHA-256,
/// until it expires but at most `CACHE_TTL` — a deleted pod's token (which
/// the API stops accepting) is honoured that long at most — so a proxy
/// that retries or restarts does not cost a review each time.
pub struct TokenReviews {
    api: kube::Api<TokenReview>,
    in_flight: tokio::sync::Semaphore,
    cache: std::sync::Mutex<Cache>,
    timeout: Duration,
}

const MAX_REVIEWS: usize = 32;
const REVIEW_TIMEOUT: Duration = Duration::from_secs(5);
const CACHE_TTL: Duration = Duration::from_secs(300);
const CACHE_ENTRIES: usize = 10_000;

/// Authenticated tokens by hash, each with when it stops counting.
#[derive(Default)]
struct Cache(HashMap<[u8; 32], (ServiceAccount, Instant)>);

impl Cache {
    fn get(&mut self, key: &[u8; 32], now: Instant) -> Option<ServiceAccount> {
        match self.0.get(key) {
            Some((sa, until)) if *until > now => Some(sa.clone()),
            Some(_) => {
                self.0.remove(key);
                None
            }
            None => None,
        }
    }

    fn insert(&mut self, key: [u8; 32], sa: ServiceAccount, until: Instant) {
        if self.0.len() >= CACHE_ENTRIES {
            let now = Instant::now();
            self.0.retain(|_, (_, until)| *until > now);
            if self.0.len() >= CACHE_ENTRIES {
                // Still full of live entries: the next reviews go uncached
                // rather than let the cache grow without bound.
                return;
            }
        }
        self.0.insert(key, (sa, until));
    }
}

impl TokenReviews {
    pub fn new(client: kube::Client) -> Self {
        Self {
            api: kube::Api::all(client),
            in_flight: tokio::sync::Semaphore::new(MAX_REVIEWS),
            cache: Default::default(),
            timeout: REVIEW_TIMEOUT,
        }
    }

    async fn review(&self, token: &str) -> Result<ServiceAccount, TokenError> {
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: Some(token.to_string()),
                audiences: Some(vec![AUDIENCE.to_string()]),
            },
            ..Default::default()
        };
        let reviewed = tokio::time::timeout(self.timeout, async {
            let _permit = self.in_flight.acquire().await;
            self.api
                .create(&kube::api::PostParams::default(), &review)
                .await
        })
        .await
        .map_err(|_| {
            TokenError::Unavailable(format!("TokenReview timed out after {:?}", self.timeout))
        })?
        .map_err(|e| TokenError::Unavailable(format!("TokenReview failed: {e}")))?;
        let status = reviewed.status.unwrap_or_default();
        if let Some(error) = status.error.filter(|e| !e.is_empty()) {
            return Err(TokenError::Invalid(error));
        }
        if status.authenticated != Some(true) {
            return Err(TokenError::Invalid("not authenticated".into()));
        }
        if !status.audiences.iter().flatten().any(|a| a == AUDIENCE) {
            return Err(TokenError::Invalid(format!("not for audience {AUDIENCE}")));
        }
        let username = status.user.and_then(|u| u.username).unwrap_or_default();
        service_account(&username)
            .ok_or_else(|| TokenError::Invalid(format!("{username:?} is not a service account")))
    }
}

#[tonic::async_trait]
impl Validate for TokenReviews {
    async fn validate(&self, token: &[u8]) -> Result<ServiceAccount, TokenError> {
        let token = std::str::from_utf8(token)
            .map_err(|_| TokenError::Invalid("not UTF-8".into()))?
            .trim();
        let key: [u8; 32] = ring::digest::digest(&ring::digest::SHA256, token.as_bytes())
            .as_ref()
            .try_into()
            .expect("SHA-256 is 32 bytes");
        let now = Instant::now();
        if let Some(sa) = self
            .cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key, now)
        {
            return Ok(sa);
        }
        let sa = self.review(token).await?;
        let until = now
            + expires_in(token, SystemTime::now())
                .unwrap_or(CACHE_TTL)
                .min(CACHE_TTL);
        self.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, sa.clone(), until);
        Ok(sa)
    }
}

/// How long until a JWT's `exp`, read without checking its signature: only
/// a token the API just authenticated is read, to know how long it lasts.
/// `None` when it is not a JWT or says nothing.
fn expires_in(token: &str, now: SystemTime) -> Option<Duration> {
    use base64::Engine;
    let payload = token.split('.').nth(1)?;
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let exp = serde_json::from_slice::<serde_json::Value>(&json).ok()?["exp"].as_u64()?;
    let exp = SystemTime::UNIX_EPOCH + Duration::from_secs(exp);
    Some(exp.duration_since(now).unwrap_or_default())
}

/// `system:serviceaccount:NS:NAME`.
fn service_account(username: &str) -> Option<ServiceAccount> {
    let rest = username.strip_prefix("system:serviceaccount:")?;
    let (namespace, name) = rest.split_once(':')?;
    (!namespace.is_empty() && !name.is_empty() && !name.contains(':')).then(|| ServiceAccount {
        namespace: namespace.to_string(),
        name: name.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_expiry_is_read_from_the_jwt() {
        use base64::Engine;
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let jwt = |claims: &str| format!("{}.{}.sig", b64(r#"{"alg":"RS256"}"#), b64(claims));
        assert_eq!(
            expires_in(&jwt(r#"{"exp":1600,"sub":"x"}"#), now),
            Some(Duration::from_secs(600))
        );
        assert_eq!(
            expires_in(&jwt(r#"{"exp":900}"#), now),
            Some(Duration::ZERO)
        );
        assert_eq!(expires_in(&jwt(r#"{"sub":"x"}"#), now), None);
        assert_eq!(expires_in("opaque-token", now), None);
        assert_eq!(expires_in("a.!!!.c", now), None);
    }

    #[test]
    fn the_cache_forgets_expired_tokens_and_stays_bounded() {
        let sa = ServiceAccount {
            namespace: "ns".into(),
            name: "web".into(),
        };
        let now = Instant::now();
        let mut cache = Cache::default();
        cache.insert([1; 32], sa.clone(), now + Duration::from_secs(10));
        assert_eq!(cache.get(&[1; 32], now), Some(sa.clone()));
        assert_eq!(cache.get(&[1; 32], now + Duration::from_secs(11)), None);
        assert!(cache.0.is_empty());
        for i in 0..CACHE_ENTRIES + 10 {
            let mut key = [0; 32];
            key[..8].copy_from_slice(&(i as u64).to_le_bytes());
            cache.insert(key, sa.clone(), now + Duration::from_secs(60));
        }
        assert_eq!(cache.0.len(), CACHE_ENTRIES);
    }

    #[test]
    fn service_account_usernames() {
        assert_eq!(
            service_account("system:serviceaccount:emojivoto:web"),
            Some(ServiceAccount {
                namespace: "emojivoto".into(),
                name: "web".into()
            })
        );
        for bad in [
            "system:node:worker-1",
            "system:serviceaccount:emojivoto",
            "system:serviceaccount::web",
            "system:serviceaccount:a:b:c",
            "admin",
        ] {
            assert_eq!(service_account(bad), None, "{bad}");
        }
    }
}
