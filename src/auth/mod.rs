//! Auth: who is calling. Turns request headers into a [`Principal`] or a 401.
//!
//! Owns key checking only; it does not look at the body, limits or models. Without a key
//! header, the dashboard's session cookie stands in for the key (`dashboard::session`, which
//! also enforces CSRF for cookie-authenticated changes before routing).

use crate::clock::format_rfc3339;
use crate::error::ApiError;
use crate::keys::{AuthFailure, KeyCachePolicy, VirtualKey, SECRET_PREFIX};
use crate::state::AppState;
use actix_web::dev::Payload;
use actix_web::http::header::{HeaderMap, AUTHORIZATION};
use actix_web::{web, FromRequest, HttpRequest};
use std::future::{ready, Ready};
use std::sync::Arc;

/// The authenticated caller.
#[derive(Debug, Clone, PartialEq)]
pub enum Principal {
    /// Holder of the master key.
    Master,
    /// No master key is configured: the gateway is open.
    Open,
    /// A virtual key.
    Virtual(Arc<VirtualKey>),
}

impl Principal {
    /// Stable id for logs, metrics and spend (never the key itself).
    pub fn key_id(&self) -> &str {
        match self {
            Principal::Master => "master",
            Principal::Open => "anonymous",
            Principal::Virtual(k) => &k.id,
        }
    }

    /// The virtual key, if the caller used one.
    pub fn key(&self) -> Option<&Arc<VirtualKey>> {
        match self {
            Principal::Virtual(k) => Some(k),
            _ => None,
        }
    }

    /// Cache namespace of the caller (a virtual key's is pinned: it cannot choose another).
    pub fn namespace(&self) -> &str {
        match self {
            Principal::Virtual(k) => k.namespace(),
            _ => "default",
        }
    }

    /// Whether the caller may pick a cache namespace per request (`x-sluice-cache-namespace`).
    pub fn may_choose_namespace(&self) -> bool {
        !matches!(self, Principal::Virtual(_))
    }

    /// The key's cache policy (master and open callers use the gateway's).
    pub fn cache_policy(&self) -> KeyCachePolicy {
        match self {
            Principal::Virtual(k) => k.cache_policy,
            _ => KeyCachePolicy::Default,
        }
    }

    /// The key's PII policy overrides, if it is a virtual key that has any.
    pub fn pii(&self) -> Option<&crate::pii::PiiOverride> {
        match self {
            Principal::Virtual(k) if !k.pii.is_empty() => Some(&k.pii),
            _ => None,
        }
    }

    /// Whether the caller may call `model`.
    pub fn allows_model(&self, model: &str) -> bool {
        match self {
            Principal::Virtual(k) => k.allows(model),
            _ => true,
        }
    }

    /// Whether the caller may use `/admin`.
    pub fn is_admin(&self) -> bool {
        match self {
            Principal::Master | Principal::Open => true,
            Principal::Virtual(k) => k.admin,
        }
    }
}

/// The key sent as `Authorization: Bearer KEY` or `x-api-key: KEY`.
fn presented_key(headers: &HeaderMap) -> Option<&str> {
    if let Some(v) = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        let v = v.trim();
        let key = match v.split_once(char::is_whitespace) {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim(),
            None if v.eq_ignore_ascii_case("bearer") => "",
            _ => v,
        };
        return (!key.is_empty()).then_some(key);
    }
    headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|k| !k.is_empty())
}

/// Whether the request names a key in a header (then a session cookie is not used).
pub fn has_key_header(headers: &HeaderMap) -> bool {
    presented_key(headers).is_some()
}

/// Whether `presented` is the master key, in constant time. Both sides are hashed first, so
/// neither the master key's length nor the position of the first differing byte shows in timing.
fn is_master_key(master: &crate::config::Secret, presented: &str) -> bool {
    use sha2::{Digest, Sha256};
    use subtle::ConstantTimeEq;
    let want = Sha256::digest(master.expose().as_bytes());
    let got = Sha256::digest(presented.as_bytes());
    want.as_slice().ct_eq(got.as_slice()).into()
}

/// Checks the caller's key: the master key, else a virtual key (from memory, no disk access).
///
/// Without a master key the gateway is open, but a virtual key that is presented still
/// resolves to its principal (so its limits and models apply), an expired one is still refused,
/// and so is an unknown key that claims to be Sluice's (`sk-sluice-…`, e.g. a revoked one).
/// Other unknown keys on an open gateway are the dummies SDKs insist on sending: they pass.
pub fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<Principal, ApiError> {
    let Some(presented) = presented_key(headers) else {
        // A key header wins over the cookie; without one, the dashboard session answers.
        if let Some(p) = crate::dashboard::session::principal_from_cookie(state, headers)? {
            return Ok(p);
        }
        return match state.config.master_key {
            Some(_) => Err(ApiError::MissingApiKey),
            None => Ok(Principal::Open),
        };
    };
    authenticate_key(state, presented)
}

/// Checks one key (the master key, else a virtual key), as [`authenticate`] does for a key
/// header; the dashboard's login uses it for the key in its body.
pub fn authenticate_key(state: &AppState, presented: &str) -> Result<Principal, ApiError> {
    let master = state.config.master_key.as_ref();
    if master.is_some_and(|m| is_master_key(m, presented)) {
        return Ok(Principal::Master);
    }
    // Virtual keys are found by the SHA-256 of the presented secret (`keys::store::hash_secret`
    // as a map key), never by comparing secrets byte by byte, so lookup timing says nothing
    // about how much of a stored secret a guess matched.
    match state.keys.authenticate(presented) {
        Ok(key) => Ok(Principal::Virtual(key)),
        Err(AuthFailure::Expired { at }) => Err(ApiError::KeyExpired {
            at: format_rfc3339(at),
        }),
        Err(AuthFailure::Unknown) if master.is_none() && !presented.starts_with(SECRET_PREFIX) => {
            Ok(Principal::Open)
        }
        Err(AuthFailure::Unknown) => Err(ApiError::InvalidApiKey),
    }
}

/// Authenticates and requires admin rights (master key, an admin virtual key, or an open
/// gateway): 401 without a valid key, 403 with a valid non-admin key.
pub fn require_admin(state: &AppState, headers: &HeaderMap) -> Result<Principal, ApiError> {
    let p = authenticate(state, headers)?;
    if p.is_admin() {
        Ok(p)
    } else {
        Err(ApiError::AdminRequired)
    }
}

impl FromRequest for Principal {
    type Error = ApiError;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(match req.app_data::<web::Data<AppState>>() {
            Some(state) => authenticate(state, req.headers()),
            None => Err(ApiError::Internal("application state missing".into())),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::{HeaderName, HeaderValue};

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(HeaderName::from_static(k), HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn reads_both_header_forms() {
        assert_eq!(
            presented_key(&headers(&[("authorization", "Bearer abc")])),
            Some("abc")
        );
        assert_eq!(
            presented_key(&headers(&[("x-api-key", "abc")])),
            Some("abc")
        );
        assert_eq!(
            presented_key(&headers(&[("authorization", "Bearer ")])),
            None
        );
        assert_eq!(presented_key(&headers(&[])), None);
    }

    #[test]
    fn master_key_comparison() {
        let m = crate::config::Secret::new("sk-master-1234");
        assert!(is_master_key(&m, "sk-master-1234"));
        assert!(!is_master_key(&m, "sk-master-1235"));
        assert!(!is_master_key(&m, "sk-master-12345"));
        assert!(!is_master_key(&m, ""));
    }
}
