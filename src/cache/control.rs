//! Per-request cache controls: `Cache-Control`, `x-sluice-cache-*` headers, LiteLLM's `cache` field.

use actix_web::http::header::HeaderMap;
use serde_json::Value;
use std::time::Duration;

/// What one request asks of the cache.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CacheControl {
    /// Skip the lookup (still store the answer).
    pub no_cache: bool,
    /// Do not store the answer.
    pub no_store: bool,
    /// Threshold override for this request.
    pub threshold: Option<f32>,
    /// TTL for the stored answer.
    pub ttl: Option<Duration>,
    /// Cache namespace chosen by the caller (LiteLLM's `cache.namespace`); entries in one
    /// namespace are never served to another.
    pub namespace: Option<String>,
}

/// A control with a bad value: the header or field name, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct ControlError {
    /// Header or body field.
    pub param: String,
    /// What is wrong.
    pub message: String,
}

fn bad(param: &str, message: impl Into<String>) -> ControlError {
    ControlError {
        param: param.into(),
        message: message.into(),
    }
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, ControlError> {
    match h.get(name) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .map(|s| Some(s.trim()))
            .map_err(|_| bad(name, format!("header {name} is not valid text"))),
    }
}

fn ttl_secs(param: &str, v: f64) -> Result<Duration, ControlError> {
    if v.is_finite() && v > 0.0 {
        Duration::try_from_secs_f64(v).map_err(|e| bad(param, e.to_string()))
    } else {
        Err(bad(
            param,
            format!("{param} must be a positive number of seconds"),
        ))
    }
}

fn namespace(param: &str, v: &str) -> Result<String, ControlError> {
    let ok = !v.is_empty()
        && v.len() <= 128
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:/".contains(&b));
    if ok {
        Ok(v.to_string())
    } else {
        Err(bad(
            param,
            "namespace must be 1-128 characters of [A-Za-z0-9-_.:/]",
        ))
    }
}

/// Reads the controls from headers and the body's `cache` field.
pub fn parse(
    headers: &HeaderMap,
    body_cache: Option<&Value>,
) -> Result<CacheControl, ControlError> {
    let mut c = CacheControl::default();
    if let Some(v) = header(headers, "cache-control")? {
        for directive in v.split(',').map(|d| d.trim().to_ascii_lowercase()) {
            match directive.as_str() {
                "no-cache" => c.no_cache = true,
                "no-store" => c.no_store = true,
                _ => {}
            }
        }
    }
    if let Some(v) = header(headers, "x-sluice-cache-threshold")? {
        let t: f32 = v
            .parse()
            .map_err(|_| bad("x-sluice-cache-threshold", format!("not a number: \"{v}\"")))?;
        if !(t > 0.0 && t <= 1.0) {
            return Err(bad(
                "x-sluice-cache-threshold",
                format!("must be in (0, 1], got {t}"),
            ));
        }
        c.threshold = Some(t);
    }
    if let Some(v) = header(headers, "x-sluice-cache-ttl")? {
        let secs: f64 = v
            .parse()
            .map_err(|_| bad("x-sluice-cache-ttl", format!("not a number: \"{v}\"")))?;
        c.ttl = Some(ttl_secs("x-sluice-cache-ttl", secs)?);
    }
    if let Some(v) = header(headers, "x-sluice-cache-namespace")? {
        c.namespace = Some(namespace("x-sluice-cache-namespace", v)?);
    }
    match body_cache {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) => {
            for (k, v) in m {
                let param = format!("cache.{k}");
                match (k.as_str(), v) {
                    ("no-cache", Value::Bool(b)) => c.no_cache |= b,
                    ("no-store", Value::Bool(b)) => c.no_store |= b,
                    ("ttl" | "s-maxage", Value::Number(n)) => {
                        c.ttl = Some(ttl_secs(&param, n.as_f64().unwrap_or(-1.0))?);
                    }
                    ("namespace", Value::String(s)) => c.namespace = Some(namespace(&param, s)?),
                    ("namespace", _) => return Err(bad(&param, "must be a string")),
                    ("no-cache" | "no-store", _) => return Err(bad(&param, "must be a boolean")),
                    ("ttl" | "s-maxage", _) => {
                        return Err(bad(&param, "must be a number of seconds"))
                    }
                    _ => {
                        return Err(bad(
                            &param,
                            "unknown cache control (known: no-cache, no-store, ttl, namespace)",
                        ))
                    }
                }
            }
        }
        Some(_) => return Err(bad("cache", "must be an object")),
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::{HeaderName, HeaderValue};
    use serde_json::json;

    fn h(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.insert(HeaderName::from_static(k), HeaderValue::from_static(v));
        }
        m
    }

    #[test]
    fn headers_and_body() {
        let c = parse(
            &h(&[
                ("cache-control", "no-cache, no-store"),
                ("x-sluice-cache-threshold", "0.9"),
                ("x-sluice-cache-ttl", "60"),
            ]),
            None,
        )
        .unwrap();
        assert!(c.no_cache && c.no_store);
        assert_eq!(c.threshold, Some(0.9));
        assert_eq!(c.ttl, Some(Duration::from_secs(60)));
        let c = parse(&h(&[]), Some(&json!({"no-store": true, "ttl": 600}))).unwrap();
        assert!(c.no_store && !c.no_cache);
        assert_eq!(c.ttl, Some(Duration::from_secs(600)));
    }

    #[test]
    fn bad_values_name_the_param() {
        assert_eq!(
            parse(&h(&[("x-sluice-cache-threshold", "2")]), None)
                .unwrap_err()
                .param,
            "x-sluice-cache-threshold"
        );
        assert_eq!(
            parse(&h(&[("x-sluice-cache-ttl", "soon")]), None)
                .unwrap_err()
                .param,
            "x-sluice-cache-ttl"
        );
        assert_eq!(
            parse(&h(&[]), Some(&json!({"ttl": -1}))).unwrap_err().param,
            "cache.ttl"
        );
        assert_eq!(
            parse(&h(&[]), Some(&json!({"nope": 1}))).unwrap_err().param,
            "cache.nope"
        );
        assert_eq!(
            parse(&h(&[]), Some(&json!("x"))).unwrap_err().param,
            "cache"
        );
    }
}
