//! The `[alerts]` section: the webhooks alerts are sent to, and how
//! delivery is retried.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::{ConfigError, Lines};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAlerts {
    #[serde(default)]
    webhooks: Vec<Spanned<RawWebhook>>,
    retry_initial: Option<Spanned<String>>,
    retry_max: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebhook {
    name: Spanned<String>,
    url: Spanned<String>,
    secret_file: Spanned<String>,
    timeout: Option<Spanned<String>>,
}

/// Where alerts go (`[alerts]`).
#[derive(Debug, Clone)]
pub struct AlertsConfig {
    pub webhooks: Vec<WebhookConfig>,
    /// First retry delay; doubles up to `retry_max`.
    pub retry_initial: Duration,
    pub retry_max: Duration,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            webhooks: vec![],
            retry_initial: Duration::from_secs(5),
            retry_max: Duration::from_secs(15 * 60),
        }
    }
}

/// One webhook; the secret is read from `secret_file` when the bastion
/// starts, never kept in the config itself.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    pub name: String,
    pub url: String,
    pub secret_file: PathBuf,
    pub timeout: Duration,
}

pub(super) fn parse_alerts(
    lines: &Lines<'_>,
    raw: Option<&Spanned<RawAlerts>>,
    path: &dyn Fn(&Spanned<String>) -> PathBuf,
) -> Result<AlertsConfig, ConfigError> {
    let mut alerts = AlertsConfig::default();
    let Some(raw) = raw else {
        return Ok(alerts);
    };
    let raw = raw.get_ref();
    if let Some(v) = &raw.retry_initial {
        alerts.retry_initial = lines.duration("alerts.retry_initial", v)?;
    }
    if let Some(v) = &raw.retry_max {
        alerts.retry_max = lines.duration("alerts.retry_max", v)?;
    }
    for (i, w) in raw.webhooks.iter().enumerate() {
        let w = w.get_ref();
        let key = |k: &str| format!("alerts.webhooks[{i}].{k}");
        let name = w.name.get_ref().clone();
        if alerts.webhooks.iter().any(|o: &WebhookConfig| o.name == name) {
            return Err(lines.error(key("name"), &w.name, format!("webhook `{name}` is declared twice")));
        }
        let url = w.url.get_ref().clone();
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(lines.error(key("url"), &w.url, "must be an http:// or https:// URL"));
        }
        let timeout = match &w.timeout {
            Some(v) => lines.duration(key("timeout"), v)?,
            None => Duration::from_secs(10),
        };
        alerts.webhooks.push(WebhookConfig {
            name,
            url,
            secret_file: path(&w.secret_file),
            timeout,
        });
    }
    Ok(alerts)
}
