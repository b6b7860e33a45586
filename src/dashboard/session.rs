//! Browser sessions of the dashboard: an opaque random cookie (`sluice_session`, HttpOnly,
//! SameSite=Strict, Secure under TLS) that maps, in memory, to who logged in and a CSRF token.
//!
//! A session keeps the key's identity (master, open gateway, or a virtual key id), never its
//! secret; a virtual key is looked up again on every request, so revoking it ends its sessions.
//! Sessions are lost on restart and expire after [`IDLE`] without use. Owns the cookie and the
//! CSRF check; `auth` asks it for the principal of a cookie.

use crate::auth::Principal;
use crate::error::ApiError;
use crate::state::AppState;
use actix_web::http::header::{HeaderMap, COOKIE};
use actix_web::http::Method;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use parking_lot::Mutex;
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Name of the session cookie.
pub const COOKIE_NAME: &str = "sluice_session";
/// Header carrying the CSRF token on state-changing cookie-authenticated calls.
pub const CSRF_HEADER: &str = "x-sluice-csrf";
/// A session unused this long is gone.
pub const IDLE: Duration = Duration::from_secs(12 * 3600);
/// Sessions kept at most; the least recently used goes first beyond it.
const MAX_SESSIONS: usize = 10_000;

/// Who a session belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Who {
    /// The master key.
    Master,
    /// Anyone, on a gateway without a master key.
    Open,
    /// A virtual key, by id.
    Key(String),
}

/// One live session.
#[derive(Debug, Clone)]
pub struct Session {
    /// Who logged in.
    pub who: Who,
    /// Token to echo in [`CSRF_HEADER`].
    pub csrf: String,
    last_seen: Instant,
}

/// Every live session, by the SHA-256 of its cookie value (the value itself is not kept).
#[derive(Debug, Default)]
pub struct Sessions {
    map: Mutex<HashMap<[u8; 32], Session>>,
}

fn random_token() -> String {
    let mut b = [0u8; 32];
    rand::rng().fill_bytes(&mut b);
    URL_SAFE_NO_PAD.encode(b)
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Sessions {
    /// Starts a session; returns its cookie value and the session.
    pub fn create(&self, who: Who) -> (String, Session) {
        let token = random_token();
        let session = Session {
            who,
            csrf: random_token(),
            last_seen: Instant::now(),
        };
        let mut map = self.map.lock();
        let now = Instant::now();
        map.retain(|_, s| now.duration_since(s.last_seen) < IDLE);
        if map.len() >= MAX_SESSIONS {
            if let Some(oldest) = map.iter().min_by_key(|(_, s)| s.last_seen).map(|(k, _)| *k) {
                map.remove(&oldest);
            }
        }
        map.insert(digest(&token), session.clone());
        (token, session)
    }

    /// The live session of a cookie value, marked as used now.
    pub fn get(&self, token: &str) -> Option<Session> {
        let key = digest(token);
        let mut map = self.map.lock();
        let now = Instant::now();
        match map.get_mut(&key) {
            Some(s) if now.duration_since(s.last_seen) < IDLE => {
                s.last_seen = now;
                Some(s.clone())
            }
            Some(_) => {
                map.remove(&key);
                None
            }
            None => None,
        }
    }

    /// Ends a session.
    pub fn destroy(&self, token: &str) {
        self.map.lock().remove(&digest(token));
    }
}

/// The session cookie's value in the request headers, if any.
pub fn cookie_value(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(COOKIE)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE_NAME)
        .map(|(_, value)| value.trim())
        .filter(|v| !v.is_empty())
}

/// The `Set-Cookie` value of a new session.
pub fn set_cookie(token: &str, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{COOKIE_NAME}={token}; HttpOnly; SameSite=Strict; Path=/{secure}")
}

/// The `Set-Cookie` value that removes the cookie.
pub fn clear_cookie(secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!(
        "{COOKIE_NAME}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT{secure}"
    )
}

/// The principal of a session, checking a virtual key again (revoked: the session ends).
pub fn principal_of(state: &AppState, token: &str, s: &Session) -> Result<Principal, ApiError> {
    match &s.who {
        Who::Master => Ok(Principal::Master),
        Who::Open => Ok(Principal::Open),
        Who::Key(id) => {
            let Some(k) = state.keys.get(id) else {
                state.dashboard.sessions.destroy(token);
                return Err(ApiError::NotLoggedIn);
            };
            if k.revoked_at.is_some() {
                state.dashboard.sessions.destroy(token);
                return Err(ApiError::NotLoggedIn);
            }
            if let Some(at) = k.expires_at {
                if state.keys.now() >= at {
                    return Err(ApiError::KeyExpired {
                        at: crate::clock::format_rfc3339(at),
                    });
                }
            }
            Ok(Principal::Virtual(k))
        }
    }
}

/// The principal of the request's session cookie, for `auth` when no key header was sent:
/// `Ok(None)` without a cookie, or with a stale one on an open gateway (it serves anyone);
/// [`ApiError::NotLoggedIn`] for a stale one otherwise.
pub fn principal_from_cookie(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Option<Principal>, ApiError> {
    let Some(token) = cookie_value(headers) else {
        return Ok(None);
    };
    match state.dashboard.sessions.get(token) {
        Some(s) => principal_of(state, token, &s).map(Some),
        None if state.config.master_key.is_none() => Ok(None),
        None => Err(ApiError::NotLoggedIn),
    }
}

/// The CSRF rule, run for every request before routing: a call authenticated by the session
/// cookie (no key header, a live session) with a method other than GET/HEAD/OPTIONS must carry
/// the session's token in [`CSRF_HEADER`]. Key-authenticated calls need none; login is exempt
/// (it authenticates by the key in its body).
pub fn check_csrf(
    state: &AppState,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
) -> Result<(), ApiError> {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
        || path == super::LOGIN_PATH
        || crate::auth::has_key_header(headers)
    {
        return Ok(());
    }
    let Some(token) = cookie_value(headers) else {
        return Ok(());
    };
    let Some(session) = state.dashboard.sessions.get(token) else {
        // Not logged in: authentication answers that, not the CSRF check.
        return Ok(());
    };
    let sent = headers
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    use subtle::ConstantTimeEq;
    let same: bool = digest(sent).ct_eq(&digest(&session.csrf)).into();
    if same {
        Ok(())
    } else {
        Err(ApiError::CsrfFailed)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use actix_web::http::header::HeaderValue;

    #[test]
    fn sessions_are_random_and_destroyable() {
        let s = Sessions::default();
        let (t1, a) = s.create(Who::Master);
        let (t2, b) = s.create(Who::Key("key_1".into()));
        assert_ne!(t1, t2);
        assert_ne!(a.csrf, b.csrf);
        // 256 bits, base64url without padding.
        assert_eq!(t1.len(), 43);
        assert!(t1
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
        assert_eq!(s.get(&t2).unwrap().who, Who::Key("key_1".into()));
        s.destroy(&t2);
        assert!(s.get(&t2).is_none());
        assert!(s.get(&t1).is_some());
        assert!(s.get("made-up").is_none());
    }

    #[test]
    fn finds_the_cookie_among_others() {
        let mut h = HeaderMap::new();
        h.append(
            COOKIE,
            HeaderValue::from_static("a=1; sluice_session=abc ; b=2"),
        );
        assert_eq!(cookie_value(&h), Some("abc"));
        let mut h = HeaderMap::new();
        h.append(COOKIE, HeaderValue::from_static("sluice_session_x=1"));
        assert_eq!(cookie_value(&h), None);
    }

    #[test]
    fn cookie_attributes() {
        let c = set_cookie("tok", false);
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict") && c.contains("Path=/"));
        assert!(!c.contains("Secure"));
        assert!(set_cookie("tok", true).ends_with("; Secure"));
        assert!(clear_cookie(false).contains("Max-Age=0"));
    }
}
