//! Transport and hardening: `sluice.tls`, `sluice.admin_listen`, `sluice.cors` and the
//! connection timeouts that bound slow clients.
//!
//! TLS files are read and parsed here, at config time, so `check-config` and start-up both fail
//! with the key's path instead of the server failing on its first handshake.

use super::raw::RawSluice;
use super::validate::ConfigIssues;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// actix-web's own default for receiving a request head; kept so that omitting the key changes
/// nothing.
const DEFAULT_CLIENT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// actix-web's own keep-alive default.
const DEFAULT_KEEP_ALIVE: Duration = Duration::from_secs(5);

/// `sluice.tls` as written.
#[derive(Debug, Default, Deserialize)]
pub struct RawTls {
    /// PEM file with the certificate chain, leaf first.
    pub cert: Option<String>,
    /// PEM file with the private key (PKCS#8, PKCS#1 or SEC1).
    pub key: Option<String>,
}

/// `sluice.cors` as written.
#[derive(Debug, Default, Deserialize)]
pub struct RawCors {
    /// Origins (`https://app.example.com`) allowed to call from a browser; `*` allows any.
    #[serde(default)]
    pub allow_origins: Vec<String>,
}

/// Transport and hardening settings.
#[derive(Debug, Clone)]
pub struct SecurityConfig {
    /// Serve HTTPS with this certificate; `None` serves plain HTTP.
    pub tls: Option<TlsConfig>,
    /// Separate listener for `/admin/*`, `/key/*` and `/metrics`; `None` serves all on `listen`.
    pub admin_listen: Option<SocketAddr>,
    /// Browser origins allowed by CORS; `None` sends no CORS headers at all.
    pub cors: Option<CorsConfig>,
    /// Time a client has to send a complete request head (slowloris guard).
    pub client_request_timeout: Duration,
    /// Idle time after which a kept-alive connection is closed.
    pub keep_alive: Duration,
}

impl Default for SecurityConfig {
    fn default() -> Self {
        Self {
            tls: None,
            admin_listen: None,
            cors: None,
            client_request_timeout: DEFAULT_CLIENT_REQUEST_TIMEOUT,
            keep_alive: DEFAULT_KEEP_ALIVE,
        }
    }
}

/// A loaded certificate and key, ready for the listener.
#[derive(Debug, Clone)]
pub struct TlsConfig {
    /// Where the certificate chain came from.
    pub cert: PathBuf,
    /// Where the private key came from.
    pub key: PathBuf,
    /// The rustls server config built from them (ring provider, TLS 1.2 and 1.3).
    pub server: Arc<rustls::ServerConfig>,
}

/// The CORS allow-list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorsConfig {
    /// Allowed origins, lower-cased; `*` allows any origin.
    pub allow_origins: Vec<String>,
}

impl CorsConfig {
    /// Whether a browser's `Origin` header is on the list.
    pub fn allows(&self, origin: &str) -> bool {
        self.allow_origins
            .iter()
            .any(|o| o == "*" || o.eq_ignore_ascii_case(origin))
    }
}

/// Validates the transport keys of `sluice`; absent keys take [`SecurityConfig::default`].
pub fn security(raw: &RawSluice, issues: &mut ConfigIssues) -> SecurityConfig {
    let defaults = SecurityConfig::default();
    let admin_listen = raw.admin_listen.as_deref().and_then(|text| {
        text.parse::<SocketAddr>()
            .map_err(|e| {
                issues.push(
                    "sluice.admin_listen",
                    format!("invalid address \"{text}\": {e}"),
                )
            })
            .ok()
    });
    let mut positive = |value: Option<f64>, key: &str, default: Duration| match value {
        None => default,
        Some(s) => match Duration::try_from_secs_f64(s) {
            Ok(d) if s > 0.0 => d,
            _ => {
                issues.push(
                    format!("sluice.{key}"),
                    format!("must be a positive number of seconds, got {s}"),
                );
                default
            }
        },
    };
    let client_request_timeout = positive(
        raw.client_request_timeout_seconds,
        "client_request_timeout_seconds",
        defaults.client_request_timeout,
    );
    let keep_alive = positive(
        raw.keep_alive_seconds,
        "keep_alive_seconds",
        defaults.keep_alive,
    );
    SecurityConfig {
        tls: raw.tls.as_ref().and_then(|t| tls(t, issues)),
        admin_listen,
        cors: raw.cors.as_ref().and_then(|c| cors(c, issues)),
        client_request_timeout,
        keep_alive,
    }
}

fn tls(raw: &RawTls, issues: &mut ConfigIssues) -> Option<TlsConfig> {
    let required = |key: &str, value: &Option<String>, issues: &mut ConfigIssues| match value {
        Some(p) if !p.trim().is_empty() => Some(PathBuf::from(p)),
        _ => {
            issues.push(
                format!("sluice.tls.{key}"),
                "required when sluice.tls is set (path of a PEM file)",
            );
            None
        }
    };
    let cert_path = required("cert", &raw.cert, issues);
    let key_path = required("key", &raw.key, issues);
    let certs = cert_path.as_ref().and_then(|p| {
        load_certs(p)
            .map_err(|e| issues.push("sluice.tls.cert", format!("{}: {e}", p.display())))
            .ok()
    });
    let key = key_path.as_ref().and_then(|p| {
        PrivateKeyDer::from_pem_file(p)
            .map_err(|e| {
                issues.push(
                    "sluice.tls.key",
                    format!("{}: no usable PEM private key: {e}", p.display()),
                )
            })
            .ok()
    });
    let (cert, key_file, certs, key) = (cert_path?, key_path?, certs?, key?);
    // rustls is built with ring only (no aws-lc), so the provider is named explicitly rather than
    // relying on a process-wide default.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(certs, key));
    match server {
        Ok(server) => Some(TlsConfig {
            cert,
            key: key_file,
            server: Arc::new(server),
        }),
        Err(e) => {
            issues.push(
                "sluice.tls.key",
                format!("does not fit the certificate in sluice.tls.cert: {e}"),
            );
            None
        }
    }
}

/// Every `CERTIFICATE` block of a PEM file; an empty chain is an error.
fn load_certs(path: &std::path::Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| e.to_string())?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not a PEM certificate file: {e}"))?;
    if certs.is_empty() {
        return Err("no PEM CERTIFICATE block in the file".into());
    }
    Ok(certs)
}

fn cors(raw: &RawCors, issues: &mut ConfigIssues) -> Option<CorsConfig> {
    if raw.allow_origins.is_empty() {
        issues.push(
            "sluice.cors.allow_origins",
            "must list at least one origin (omit sluice.cors to turn CORS off)",
        );
        return None;
    }
    let mut ok = true;
    for (i, origin) in raw.allow_origins.iter().enumerate() {
        if let Err(e) = check_origin(origin) {
            issues.push(format!("sluice.cors.allow_origins[{i}]"), e);
            ok = false;
        }
    }
    ok.then(|| CorsConfig {
        allow_origins: raw
            .allow_origins
            .iter()
            .map(|o| o.to_ascii_lowercase())
            .collect(),
    })
}

/// An origin is `scheme://host[:port]` exactly as browsers send it: no path, no trailing slash.
fn check_origin(origin: &str) -> Result<(), String> {
    if origin == "*" {
        return Ok(());
    }
    let bad = || format!("must be an origin like https://app.example.com, got \"{origin}\"");
    let url = reqwest::Url::parse(origin).map_err(|_| bad())?;
    let plain = matches!(url.scheme(), "http" | "https")
        && url.host_str().is_some()
        && url.path() == "/"
        && url.query().is_none()
        && url.fragment().is_none()
        && url.username().is_empty()
        && !origin.ends_with('/');
    if plain {
        Ok(())
    } else {
        Err(bad())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(issues: &ConfigIssues) -> Vec<&str> {
        issues.0.iter().map(|i| i.path.as_str()).collect()
    }

    #[test]
    fn defaults() {
        let mut issues = ConfigIssues::default();
        let c = security(&RawSluice::default(), &mut issues);
        assert!(issues.0.is_empty());
        assert!(c.tls.is_none() && c.admin_listen.is_none() && c.cors.is_none());
        assert_eq!(c.client_request_timeout, Duration::from_secs(5));
        assert_eq!(c.keep_alive, Duration::from_secs(5));
    }

    #[test]
    fn errors_name_their_keys() {
        let mut issues = ConfigIssues::default();
        let raw = RawSluice {
            admin_listen: Some("localhost".into()),
            client_request_timeout_seconds: Some(0.0),
            keep_alive_seconds: Some(-1.0),
            tls: Some(RawTls {
                cert: Some("/nonexistent/cert.pem".into()),
                key: None,
            }),
            cors: Some(RawCors {
                allow_origins: vec![
                    "https://ok.example.com".into(),
                    "https://app.example.com/".into(),
                    "app.example.com".into(),
                ],
            }),
            ..RawSluice::default()
        };
        let c = security(&raw, &mut issues);
        assert!(c.tls.is_none() && c.cors.is_none());
        assert_eq!(
            paths(&issues),
            [
                "sluice.admin_listen",
                "sluice.client_request_timeout_seconds",
                "sluice.keep_alive_seconds",
                "sluice.tls.key",
                "sluice.tls.cert",
                "sluice.cors.allow_origins[1]",
                "sluice.cors.allow_origins[2]",
            ]
        );
        assert!(issues.0[4].message.contains("/nonexistent/cert.pem"));
    }

    #[test]
    fn unparsable_tls_files() {
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not pem at all\n").unwrap();
        let mut issues = ConfigIssues::default();
        let raw = RawTls {
            cert: Some(junk.display().to_string()),
            key: Some(junk.display().to_string()),
        };
        assert!(tls(&raw, &mut issues).is_none());
        assert_eq!(paths(&issues), ["sluice.tls.cert", "sluice.tls.key"]);
    }

    #[test]
    fn cors_matching() {
        let mut issues = ConfigIssues::default();
        let raw = RawCors {
            allow_origins: vec![
                "https://App.example.com".into(),
                "http://localhost:3000".into(),
            ],
        };
        let c = cors(&raw, &mut issues).unwrap();
        assert!(issues.0.is_empty());
        assert!(c.allows("https://app.example.com"));
        assert!(c.allows("http://localhost:3000"));
        assert!(!c.allows("http://localhost:3001"));
        assert!(!c.allows("https://evil.example.com"));
        assert!(cors(&RawCors::default(), &mut issues).is_none());
        assert_eq!(paths(&issues), ["sluice.cors.allow_origins"]);
    }
}
