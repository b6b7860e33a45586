//! Budget alerts: a log line and, when `sluice.alerts.webhook_url` is set, a JSON POST sent in
//! the background with a timeout. A slow or failing receiver is logged and never delays a
//! request.

use serde::Serialize;
use std::collections::VecDeque;
use std::time::Duration;

/// Counter: budget alerts raised, by `scope`.
pub const BUDGET_ALERTS_TOTAL: &str = "sluice_budget_alerts_total";

/// How long a webhook call may take.
const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(5);
/// Alerts kept in memory for inspection.
const KEEP_RECENT: usize = 100;

/// `sluice.alerts`.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertsConfig {
    /// Where to POST alerts; `None`: log lines only.
    pub webhook_url: Option<String>,
    /// Fractions of a budget that raise an alert when crossed, ascending.
    pub thresholds: Vec<f64>,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        Self {
            webhook_url: None,
            thresholds: vec![0.5, 0.8, 1.0],
        }
    }
}

/// The webhook body.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BudgetAlert {
    /// Always `budget_alert`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// `key`, `user` or `global`.
    pub scope: &'static str,
    /// The key's id (key budgets).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// The key's alias (key budgets).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
    /// The end user (user budgets).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// The fraction crossed.
    pub threshold: f64,
    /// USD spent in the window.
    pub spend: f64,
    /// The budget in USD.
    pub max_budget: f64,
    /// Window start (RFC 3339).
    pub window_start: String,
    /// Window end (RFC 3339); `None` for a budget that never resets.
    pub window_end: Option<String>,
}

/// Sends alerts.
#[derive(Debug)]
pub struct Alerter {
    config: AlertsConfig,
    client: Option<reqwest::Client>,
    recent: parking_lot::Mutex<VecDeque<BudgetAlert>>,
}

impl Alerter {
    /// An alerter for the config (the HTTP client is built only when a URL is set).
    pub fn new(config: AlertsConfig) -> Self {
        let client = config.webhook_url.as_ref().and_then(|_| {
            reqwest::Client::builder()
                .timeout(WEBHOOK_TIMEOUT)
                .build()
                .map_err(|e| tracing::error!(error = %e, "cannot build the alert webhook client; alerts are logged only"))
                .ok()
        });
        Self {
            config,
            client,
            recent: parking_lot::Mutex::new(VecDeque::new()),
        }
    }

    /// The configured thresholds.
    pub fn thresholds(&self) -> &[f64] {
        &self.config.thresholds
    }

    /// Logs the alert and posts it in the background.
    pub fn raise(&self, alert: BudgetAlert) {
        tracing::warn!(
            scope = alert.scope,
            key_id = alert.key_id.as_deref().unwrap_or("-"),
            user = alert.user_id.as_deref().unwrap_or("-"),
            threshold = alert.threshold,
            spend_usd = alert.spend,
            max_budget_usd = alert.max_budget,
            window_end = alert.window_end.as_deref().unwrap_or("never"),
            "budget alert: {:.0}% of the budget spent",
            alert.threshold * 100.0
        );
        metrics::counter!(BUDGET_ALERTS_TOTAL, "scope" => alert.scope).increment(1);
        {
            let mut recent = self.recent.lock();
            if recent.len() == KEEP_RECENT {
                recent.pop_front();
            }
            recent.push_back(alert.clone());
        }
        let (Some(url), Some(client)) = (&self.config.webhook_url, &self.client) else {
            return;
        };
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            tracing::warn!("no async runtime to post the budget alert from; logged only");
            return;
        };
        let request = client.post(url).json(&alert);
        rt.spawn(async move {
            match request.send().await {
                Ok(r) if r.status().is_success() => {}
                Ok(r) => tracing::warn!(
                    status = r.status().as_u16(),
                    "budget alert webhook refused the alert"
                ),
                Err(e) => tracing::warn!(error = %e, "budget alert webhook failed"),
            }
        });
    }

    /// The last alerts raised, oldest first.
    pub fn recent(&self) -> Vec<BudgetAlert> {
        self.recent.lock().iter().cloned().collect()
    }
}
