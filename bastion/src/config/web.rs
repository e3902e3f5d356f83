//! The `[web]` section: the auditor console's HTTPS listener, its
//! certificate, and how long a browser login lasts.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::{ConfigError, Lines};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWeb {
    listen: Spanned<String>,
    cert: Spanned<String>,
    key: Spanned<String>,
    idle_timeout: Option<Spanned<String>>,
    absolute_timeout: Option<Spanned<String>>,
}

/// The console's HTTPS listener (`[web]`); absent, there is no browser console.
#[derive(Debug, Clone)]
pub struct WebConfig {
    pub listen: SocketAddr,
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8), 0600.
    pub key: PathBuf,
    /// A login ends after this long without a request.
    pub idle_timeout: Duration,
    /// A login ends this long after it began, however busy.
    pub absolute_timeout: Duration,
}

pub const DEFAULT_IDLE: Duration = Duration::from_secs(15 * 60);
pub const DEFAULT_ABSOLUTE: Duration = Duration::from_secs(8 * 3600);

pub(super) fn parse_web(
    lines: &Lines,
    raw: Option<&Spanned<RawWeb>>,
    path: &dyn Fn(&Spanned<String>) -> PathBuf,
) -> Result<Option<WebConfig>, ConfigError> {
    let Some(r) = raw.map(|r| r.get_ref()) else {
        return Ok(None);
    };
    let listen = r.listen.get_ref().parse::<SocketAddr>().map_err(|_| {
        lines.error(
            "web.listen",
            &r.listen,
            format!(
                "`{}` is not an address:port such as \"0.0.0.0:8443\"",
                r.listen.get_ref()
            ),
        )
    })?;
    let idle_timeout = lines.duration_or("web.idle_timeout".into(), &r.idle_timeout, DEFAULT_IDLE)?;
    let absolute_timeout = lines.duration_or("web.absolute_timeout".into(), &r.absolute_timeout, DEFAULT_ABSOLUTE)?;
    for (key, value, d) in [
        ("web.idle_timeout", &r.idle_timeout, idle_timeout),
        ("web.absolute_timeout", &r.absolute_timeout, absolute_timeout),
    ] {
        if d < Duration::from_secs(60) || d > Duration::from_secs(24 * 3600) {
            let at = value.as_ref().expect("defaults are in range");
            return Err(lines.error(key, at, "must be between 1m and 24h"));
        }
    }
    if idle_timeout > absolute_timeout {
        let at = r.idle_timeout.as_ref().unwrap_or(&r.listen);
        return Err(lines.error("web.idle_timeout", at, "must not be longer than web.absolute_timeout"));
    }
    Ok(Some(WebConfig {
        listen,
        cert: path(&r.cert),
        key: path(&r.key),
        idle_timeout,
        absolute_timeout,
    }))
}
