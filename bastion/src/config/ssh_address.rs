//! `server.public_address`: where engineers reach the bastion with `ssh`,
//! as written into exec kubeconfigs. Pure.

/// Where `ssh` reaches the bastion: `host` and, when not 22, `port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshAddress {
    pub host: String,
    pub port: Option<u16>,
}

impl SshAddress {
    /// Parses `HOST`, `HOST:PORT`, `[V6]` or `[V6]:PORT`.
    pub fn parse(text: &str) -> Option<SshAddress> {
        let (host, port) = if let Some(rest) = text.strip_prefix('[') {
            let (h, after) = rest.split_once(']')?;
            match after {
                "" => (h, None),
                p => (h, Some(p.strip_prefix(':')?.parse::<u16>().ok()?)),
            }
        } else if text.matches(':').count() == 1 {
            let (h, p) = text.split_once(':')?;
            (h, Some(p.parse::<u16>().ok()?))
        } else {
            (text, None)
        };
        if host.is_empty() || host.starts_with('-') {
            return None;
        }
        Some(SshAddress {
            host: host.to_string(),
            port: port.filter(|p| *p != 22),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        let a = |s| SshAddress::parse(s);
        assert_eq!(
            a("bastion.corp"),
            Some(SshAddress {
                host: "bastion.corp".into(),
                port: None
            })
        );
        assert_eq!(a("bastion.corp:22").unwrap().port, None);
        assert_eq!(a("127.0.0.1:2222").unwrap().port, Some(2222));
        assert_eq!(a("[::1]:2222").unwrap().host, "::1");
        assert_eq!(a("::1").unwrap().host, "::1");
        assert_eq!(a("-oProxyCommand=x"), None);
        assert_eq!(a("host:port"), None);
    }
}
