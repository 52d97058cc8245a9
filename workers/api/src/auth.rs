//! Bearer-token auth and per-principal rate limits.
//!
//! Tokens are configured as SHA-256 digests (`[principal:]hex`); a request's token is hashed
//! and looked up, so the config never holds a usable credential. Each principal has a token
//! bucket of `requests_per_minute`; past it, 429 with `Retry-After`.

use shared::api::ErrorCode;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use axum::http::{HeaderMap, StatusCode, header};
use sha2::{Digest, Sha256};

use crate::error::ApiError;

/// Hex SHA-256 of a token.
pub fn token_digest(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Digest → principal.
pub struct Tokens(HashMap<String, String>);

impl Tokens {
    /// From config entries `[principal:]digest`; a bare digest's principal is `token-<first 8>`.
    pub fn new(entries: &[String]) -> Self {
        Self(
            entries
                .iter()
                .map(|e| match e.rsplit_once(':') {
                    Some((p, d)) => (d.to_ascii_lowercase(), p.to_owned()),
                    None => (
                        e.to_ascii_lowercase(),
                        format!("token-{}", &e[..8.min(e.len())]),
                    ),
                })
                .collect(),
        )
    }

    /// The principal of a request's `Authorization: Bearer` token.
    ///
    /// # Errors
    /// 401 without a known token.
    pub fn principal(&self, headers: &HeaderMap) -> Result<String, ApiError> {
        let unauthorized = || {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                ErrorCode::Unauthorized,
                "a valid bearer token is required",
            )
        };
        let value = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(unauthorized)?;
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .ok_or_else(unauthorized)?;
        self.0
            .get(&token_digest(token.trim()))
            .cloned()
            .ok_or_else(unauthorized)
    }
}

/// Token buckets per principal.
pub struct RateLimiter {
    per_minute: f64,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl RateLimiter {
    /// `per_minute` requests per principal, bursting up to the same number.
    pub fn new(per_minute: u32) -> Self {
        Self {
            per_minute: f64::from(per_minute),
            buckets: Mutex::default(),
        }
    }

    /// Take one request's token.
    ///
    /// # Errors
    /// 429 with `Retry-After` when the bucket is empty.
    pub fn check(&self, principal: &str) -> Result<(), ApiError> {
        let mut b = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let rate = self.per_minute / 60.0;
        let (tokens, last) = b
            .entry(principal.to_owned())
            .or_insert((self.per_minute, now));
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * rate).min(self.per_minute);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            return Ok(());
        }
        let wait = ((1.0 - *tokens) / rate).ceil().max(1.0) as u64;
        Err(ApiError {
            retry_after: Some(wait),
            ..ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                ErrorCode::RateLimited,
                "request rate quota exceeded",
            )
        })
    }
}

/// Long-polls in progress per principal, capped, so one client cannot hold every connection
/// and store read of the API in `?wait=` loops.
#[derive(Default)]
pub struct Waiters {
    by_principal: Mutex<HashMap<String, usize>>,
}

/// One long-poll's place; given back on drop.
pub struct WaiterGuard {
    waiters: std::sync::Arc<Waiters>,
    principal: String,
}

impl Waiters {
    /// Take a place for `principal` if fewer than `cap` of its long-polls are in progress.
    ///
    /// # Errors
    /// 429 `too_many_waiters` with `Retry-After: 1` at the cap.
    pub fn enter(
        self: &std::sync::Arc<Self>,
        principal: &str,
        cap: usize,
    ) -> Result<WaiterGuard, ApiError> {
        let mut m = self.by_principal.lock().unwrap_or_else(|p| p.into_inner());
        let n = m.entry(principal.to_owned()).or_insert(0);
        if *n >= cap {
            return Err(ApiError {
                retry_after: Some(1),
                ..ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    ErrorCode::TooManyWaiters,
                    format!("at most {cap} concurrent ?wait= requests per principal"),
                )
            });
        }
        *n += 1;
        Ok(WaiterGuard {
            waiters: self.clone(),
            principal: principal.to_owned(),
        })
    }

    /// Long-polls of `principal` in progress.
    pub fn count(&self, principal: &str) -> usize {
        let m = self.by_principal.lock().unwrap_or_else(|p| p.into_inner());
        m.get(principal).copied().unwrap_or(0)
    }
}

impl Drop for WaiterGuard {
    fn drop(&mut self) {
        let mut m = self
            .waiters
            .by_principal
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(n) = m.get_mut(&self.principal) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(&self.principal);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_matched_by_digest() {
        let t = Tokens::new(&[
            format!("alice:{}", token_digest("s3cret")),
            token_digest("other"),
        ]);
        let mut h = HeaderMap::new();
        assert_eq!(
            t.principal(&h).unwrap_err().status,
            StatusCode::UNAUTHORIZED
        );
        h.insert(header::AUTHORIZATION, "Bearer s3cret".parse().unwrap());
        assert_eq!(t.principal(&h).unwrap(), "alice");
        h.insert(header::AUTHORIZATION, "Bearer other".parse().unwrap());
        assert!(t.principal(&h).unwrap().starts_with("token-"));
        h.insert(header::AUTHORIZATION, "Bearer wrong".parse().unwrap());
        assert!(t.principal(&h).is_err());
        h.insert(header::AUTHORIZATION, "Basic s3cret".parse().unwrap());
        assert!(t.principal(&h).is_err());
    }

    #[test]
    fn waiters_are_capped_per_principal_and_given_back() {
        let w = std::sync::Arc::new(Waiters::default());
        let a1 = w.enter("alice", 2).unwrap();
        let _a2 = w.enter("alice", 2).unwrap();
        let e = w.enter("alice", 2).err().unwrap();
        assert_eq!(e.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(e.retry_after, Some(1));
        // Another principal is not affected.
        let _b = w.enter("bob", 2).unwrap();
        drop(a1);
        assert_eq!(w.count("alice"), 1);
        let _a3 = w.enter("alice", 2).unwrap();
    }

    #[test]
    fn rate_limit_answers_429_with_retry_after() {
        let r = RateLimiter::new(3);
        for _ in 0..3 {
            r.check("a").unwrap();
        }
        let e = r.check("a").unwrap_err();
        assert_eq!(e.status, StatusCode::TOO_MANY_REQUESTS);
        assert!(e.retry_after.unwrap() >= 1);
        r.check("b").unwrap();
    }
}
