//! The server address, checked once at set-up: `ldaps://host[:port]`, or
//! `ldap://host[:port]` only with StartTLS, so that no configuration sends a
//! password in clear; the host must be a valid TLS server name. Pure: no I/O.

use super::setup::{LdapSetupError, setup_err};

/// A checked server address: what ldap3 connects to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ServerUrl {
    /// `ldaps://host:port` or `ldap://host:port`.
    pub(super) url: String,
    pub(super) starttls: bool,
}

/// Checks the URL and the StartTLS setting: TLS is mandatory.
pub(super) fn parse_url(url: &str, starttls: bool) -> Result<ServerUrl, LdapSetupError> {
    let url = url.trim();
    let (scheme, rest, default_port) = scheme_of(url, starttls)?;
    let hostport = rest.strip_suffix('/').unwrap_or(rest);
    if hostport.is_empty() {
        return Err(setup_err(format!("url {url:?}: no host")));
    }
    if hostport.contains(['/', '?', '#', '@', ' ']) {
        return Err(setup_err(format!(
            "url {url:?}: only scheme://host[:port] is accepted (no DN, filter, user or spaces)"
        )));
    }
    if hostport.starts_with('[') {
        return Err(setup_err(format!(
            "url {url:?}: IPv6 address literals are not supported; use a host name"
        )));
    }
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) => {
            let port: u16 = p
                .parse()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| setup_err(format!("url {url:?}: bad port {p:?}")))?;
            (h, port)
        }
        None => (hostport, default_port),
    };
    if host.is_empty() {
        return Err(setup_err(format!("url {url:?}: no host")));
    }
    // The name the certificate must carry (checked by rustls at connect).
    rustls::pki_types::ServerName::try_from(host).map_err(|e| {
        setup_err(format!(
            "url {url:?}: host {host:?} is not a valid TLS server name: {e}"
        ))
    })?;
    Ok(ServerUrl {
        url: format!("{scheme}://{host}:{port}"),
        starttls: scheme == "ldap",
    })
}

/// The scheme of a trimmed `url`, which must agree with `starttls`; the rest
/// of the URL after `://`; and the scheme's default port.
fn scheme_of(url: &str, starttls: bool) -> Result<(&'static str, &str, u16), LdapSetupError> {
    let lower = url.to_ascii_lowercase();
    let (scheme, rest, default_port) = if lower.starts_with("ldaps://") {
        ("ldaps", &url["ldaps://".len()..], 636u16)
    } else if lower.starts_with("ldap://") {
        ("ldap", &url["ldap://".len()..], 389u16)
    } else {
        return Err(setup_err(format!(
            "url {url:?}: the scheme must be ldaps:// (or ldap:// with starttls = true)"
        )));
    };
    match (scheme, starttls) {
        ("ldap", false) => {
            return Err(setup_err(format!(
                "url {url:?}: plain ldap:// without StartTLS would send passwords in clear; \
                 use ldaps://HOST:636, or set starttls = true"
            )));
        }
        ("ldaps", true) => {
            return Err(setup_err(format!(
                "url {url:?}: starttls = true is for ldap:// URLs; ldaps:// is TLS already"
            )));
        }
        _ => {}
    }
    Ok((scheme, rest, default_port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let ok = |u: &str, st: bool| parse_url(u, st).map(|s| (s.url, s.starttls));
        assert_eq!(
            ok("ldaps://dc1.corp.test", false).unwrap(),
            ("ldaps://dc1.corp.test:636".into(), false)
        );
        assert_eq!(
            ok("LDAPS://127.0.0.1:1636/", false).unwrap(),
            ("ldaps://127.0.0.1:1636".into(), false)
        );
        assert_eq!(ok("ldap://dc1:389", true).unwrap(), ("ldap://dc1:389".into(), true));
        assert_eq!(ok("ldap://dc1", true).unwrap(), ("ldap://dc1:389".into(), true));
        let err = |u: &str, st: bool| parse_url(u, st).unwrap_err().to_string();
        assert!(err("ldap://dc1:389", false).contains("in clear"));
        assert!(err("ldaps://dc1", true).contains("starttls"));
        assert!(err("ldapi:///run/slapd", false).contains("scheme"));
        assert!(err("https://dc1", false).contains("scheme"));
        assert!(err("ldaps://", false).contains("no host"));
        assert!(err("ldaps://dc1:0", false).contains("port"));
        assert!(err("ldaps://dc1:99999", false).contains("port"));
        assert!(err("ldaps://dc1/dc=corp", false).contains("only"));
        assert!(err("ldaps://[::1]:636", false).contains("IPv6"));
        assert!(err("ldaps://bad_host!:636", false).contains("TLS server name"));
    }
}
