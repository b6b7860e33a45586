//! `sluice.realtime`: idle timeout, message size and sockets per key of `/v1/realtime`.

use super::raw::RawRealtime;
use super::validate::ConfigIssues;
use crate::realtime::RealtimeConfig;
use std::time::Duration;

/// Validates `sluice.realtime`; absent keys take [`RealtimeConfig::default`].
pub fn realtime(raw: &RawRealtime, issues: &mut ConfigIssues) -> RealtimeConfig {
    let defaults = RealtimeConfig::default();
    let idle_timeout = match raw.idle_timeout_seconds {
        None => defaults.idle_timeout,
        Some(s) => match Duration::try_from_secs_f64(s) {
            Ok(d) if s > 0.0 => d,
            _ => {
                issues.push(
                    "sluice.realtime.idle_timeout_seconds",
                    format!("must be a positive number of seconds, got {s}"),
                );
                defaults.idle_timeout
            }
        },
    };
    let mut positive = |value: Option<usize>, key: &str, default: usize| match value {
        None => default,
        Some(0) => {
            issues.push(format!("sluice.realtime.{key}"), "must be greater than 0");
            default
        }
        Some(n) => n,
    };
    RealtimeConfig {
        idle_timeout,
        max_message_bytes: positive(
            raw.max_message_bytes,
            "max_message_bytes",
            defaults.max_message_bytes,
        ),
        max_sockets_per_key: positive(
            raw.max_sockets_per_key,
            "max_sockets_per_key",
            defaults.max_sockets_per_key,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_errors() {
        let mut issues = ConfigIssues::default();
        let c = realtime(&RawRealtime::default(), &mut issues);
        assert_eq!(c, RealtimeConfig::default());
        assert_eq!(c.idle_timeout, Duration::from_secs(300));
        assert_eq!(c.max_message_bytes, 16 * 1024 * 1024);
        assert_eq!(c.max_sockets_per_key, 8);
        assert!(issues.0.is_empty());

        let raw = RawRealtime {
            idle_timeout_seconds: Some(-1.0),
            max_message_bytes: Some(0),
            max_sockets_per_key: Some(2),
        };
        let c = realtime(&raw, &mut issues);
        assert_eq!(c.max_sockets_per_key, 2);
        let paths: Vec<&str> = issues.0.iter().map(|i| i.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "sluice.realtime.idle_timeout_seconds",
                "sluice.realtime.max_message_bytes"
            ]
        );
    }
}
