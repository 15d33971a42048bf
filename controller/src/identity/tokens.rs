//! Who a proxy's token says it is: Kubernetes' TokenReview in a cluster, the
//! topology file's `tokens` locally.

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use linkerd_discovery::Topology;
use std::sync::Arc;
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
pub struct TokenReviews(kube::Api<TokenReview>);

impl TokenReviews {
    pub fn new(client: kube::Client) -> Self {
        Self(kube::Api::all(client))
    }
}

#[tonic::async_trait]
impl Validate for TokenReviews {
    async fn validate(&self, token: &[u8]) -> Result<ServiceAccount, TokenError> {
        let token = std::str::from_utf8(token)
            .map_err(|_| TokenError::Invalid("not UTF-8".into()))?
            .trim();
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: Some(token.to_string()),
                audiences: Some(vec![AUDIENCE.to_string()]),
            },
            ..Default::default()
        };
        let reviewed = self
            .0
            .create(&kube::api::PostParams::default(), &review)
            .await
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
