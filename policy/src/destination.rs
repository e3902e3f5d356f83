//! Forward destinations (`local_forward`, `remote_forward`): the patterns a
//! rule writes, the hosts a client asks for, and whether one covers the other.
//!
//! Nothing is resolved here, and the node resolves whatever host string it is
//! given. So a pattern over addresses is never compared as text with something
//! the node would read as a name (`10.0.0.*` against `10.0.0.attacker.example`)
//! or as some other address (`010.0.0.5` is 8.0.0.5 to `inet_aton`,
//! `2130706433` is 127.0.0.1): a requested host is first sorted into an
//! address in canonical form, a plain host name, or neither ([`Requested`]),
//! and each kind of pattern matches only its own kind. Only `*` matches
//! "neither".

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::glob;

/// The host part of a destination pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    /// `*`: any host the node will accept, whatever its spelling.
    Any,
    /// A CIDR block, or one address (a /32 or /128). IPv4-mapped IPv6
    /// (`::ffff:10.0.0.0/120`) is kept as the IPv4 block it is.
    Net(IpNet),
    /// A glob over the canonical text of addresses of one family
    /// (`10.0.0.*`, `fd00::*`), lowercase.
    AddrGlob { v6: bool, glob: String },
    /// A glob over host names (`*.internal`), lowercase, without a trailing dot.
    Name(String),
}

/// A forward destination pattern: `HOST:PORT`, `HOST:*` or `*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    pub host: HostPattern,
    /// `None`: any port.
    pub port: Option<u32>,
}

/// A host as a client asked for it, sorted by how the node would read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requested {
    /// An IP literal in a spelling every resolver reads the same way;
    /// IPv4-mapped IPv6 is given as the IPv4 address it carries.
    Addr(IpAddr),
    /// A host name: lowercase, without its trailing dot.
    Name(String),
    /// Neither: empty (`-R` on all interfaces), a spelling `inet_aton` reads
    /// as a number (`0x7f.1`, `127.0.0.01`, `127.0.0.1.`), a scoped IPv6
    /// address, or characters no host name has.
    Other,
}

impl Requested {
    pub fn classify(host: &str) -> Requested {
        // std's parser takes only dotted-quad decimal without leading zeros
        // for IPv4; every IPv6 spelling it takes means one address.
        if let Ok(a) = host.parse::<IpAddr>() {
            return Requested::Addr(a.to_canonical());
        }
        // `db.internal.` is the absolute form of `db.internal`: the same host.
        let name = host.strip_suffix('.').unwrap_or(host);
        let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
        if name.is_empty() || !name.chars().all(plain) || name.split('.').any(str::is_empty) {
            return Requested::Other;
        }
        if reads_as_number(name) {
            return Requested::Other;
        }
        Requested::Name(name.to_ascii_lowercase())
    }
}

/// Whether every dot-separated label could be an `inet_aton` part (decimal,
/// `0`-octal or `0x`-hex): such a string is an address to the node's
/// resolver however it is spelt. Wildcards count as digits, so a pattern
/// like `0x7f.*` is caught too.
fn reads_as_number(name: &str) -> bool {
    name.split('.').all(|label| {
        label.starts_with(|c: char| c.is_ascii_digit() || c == '*' || c == '?')
            && label
                .chars()
                .all(|c| c.is_ascii_hexdigit() || matches!(c, 'x' | 'X' | '*' | '?'))
    })
}

impl HostPattern {
    /// Parses the host part (without brackets).
    pub fn parse(host: &str) -> Result<HostPattern, String> {
        if host == "*" {
            return Ok(HostPattern::Any);
        }
        if host.is_empty() {
            return Err("the host is empty".into());
        }
        if let Some((addr, prefix)) = host.split_once('/') {
            return parse_cidr(host, addr, prefix);
        }
        if let Ok(a) = host.parse::<IpAddr>() {
            let a = a.to_canonical();
            let full = if a.is_ipv4() { 32 } else { 128 };
            return Ok(HostPattern::Net(IpNet::new(a, full).expect("full-length prefix")));
        }
        if host.contains(':') {
            return parse_v6_glob(host);
        }
        if host.chars().all(|c| c.is_ascii_digit() || matches!(c, '.' | '*' | '?')) && host.contains('.') {
            return parse_v4_glob(host);
        }
        parse_name(host)
    }

    pub fn matches(&self, host: &Requested) -> bool {
        match (self, host) {
            (HostPattern::Any, _) => true,
            (HostPattern::Net(net), Requested::Addr(a)) => net.contains(a),
            (HostPattern::AddrGlob { v6, glob }, Requested::Addr(a)) => {
                a.is_ipv6() == *v6 && glob::matches(glob, &a.to_string())
            }
            (HostPattern::Name(glob), Requested::Name(n)) => glob::matches(glob, n),
            _ => false,
        }
    }

    fn is_v6(&self) -> bool {
        match self {
            HostPattern::Net(n) => matches!(n, IpNet::V6(_)),
            HostPattern::AddrGlob { v6, .. } => *v6,
            _ => false,
        }
    }
}

fn parse_cidr(host: &str, addr: &str, prefix: &str) -> Result<HostPattern, String> {
    if glob::is_pattern(host) {
        return Err(
            "a wildcard and a prefix length do not mix: write a CIDR (10.0.0.0/24) or a glob (10.0.0.*)".into(),
        );
    }
    // ipnet's own parser takes `010.0.0.0/8`; std's does not.
    let addr: IpAddr = addr
        .parse()
        .map_err(|_| format!("`{addr}` is not an IP address in canonical form (a CIDR is ADDRESS/LENGTH)"))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let len = Some(prefix)
        .filter(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()) && (p.len() == 1 || !p.starts_with('0')))
        .and_then(|p| p.parse::<u8>().ok())
        .filter(|&l| l <= max)
        .ok_or_else(|| format!("the prefix length must be 0-{max}"))?;
    let net = IpNet::new(addr, len).expect("length checked");
    if net.trunc() != net {
        return Err(format!("bits are set past the prefix length: write {}", net.trunc()));
    }
    Ok(HostPattern::Net(canonical_net(net)))
}

/// A block inside `::ffff:0:0/96` as the IPv4 block it is, since requested
/// mapped addresses are matched as IPv4.
fn canonical_net(net: IpNet) -> IpNet {
    match net {
        IpNet::V6(n) if n.prefix_len() >= 96 => match n.network().to_ipv4_mapped() {
            Some(v4) => IpNet::new(IpAddr::V4(v4), n.prefix_len() - 96).expect("at most 32"),
            None => net,
        },
        _ => net,
    }
}

fn parse_v6_glob(host: &str) -> Result<HostPattern, String> {
    let glob = host.to_ascii_lowercase();
    if !glob::is_pattern(&glob)
        || !glob
            .chars()
            .all(|c| c.is_ascii_hexdigit() || matches!(c, ':' | '*' | '?'))
    {
        return Err("not an IPv6 address, CIDR (fd00::/64) or glob (fd00::*); \
             an IPv4-mapped address is written as IPv4"
            .into());
    }
    Ok(HostPattern::AddrGlob { v6: true, glob })
}

fn parse_v4_glob(host: &str) -> Result<HostPattern, String> {
    let labels: Vec<&str> = host.split('.').collect();
    let bad = |why: &str| Err(format!("not an IPv4 address or glob: {why}"));
    if !glob::is_pattern(host) {
        return bad("write four numbers 0-255 without leading zeros, or a CIDR such as 10.0.0.0/24");
    }
    if labels.len() > 4 || labels.iter().any(|l| l.is_empty()) {
        return bad("at most four non-empty parts separated by dots");
    }
    if labels.len() < 4 && !host.contains('*') {
        return bad("fewer than four parts can only match with a `*`");
    }
    let octet = |l: &&str| l.parse::<u8>().is_ok_and(|n| n.to_string() == **l);
    if let Some(l) = labels.iter().find(|l| !glob::is_pattern(l) && !octet(l)) {
        return bad(&format!("`{l}` is not a number 0-255 without leading zeros"));
    }
    Ok(HostPattern::AddrGlob {
        v6: false,
        glob: host.into(),
    })
}

fn parse_name(host: &str) -> Result<HostPattern, String> {
    let name = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '*' | '?');
    if !name.chars().all(allowed) || name.split('.').any(str::is_empty) {
        return Err("not a host name, glob (*.internal), IP address, CIDR (10.0.0.0/24) or `*`".into());
    }
    if reads_as_number(&name) {
        return Err("reads as an address to a resolver but is not one in canonical form: \
             write it as dotted decimal (127.0.0.1, 10.0.0.*) or a CIDR"
            .into());
    }
    Ok(HostPattern::Name(name))
}

impl Destination {
    /// Parses `HOST:PORT`, `HOST:*`, `[IPv6]:PORT` or `*` (anything), where
    /// HOST is `*`, an address, a CIDR, an address glob or a name glob.
    pub fn parse(text: &str) -> Result<Destination, String> {
        let text = text.trim();
        if text == "*" {
            return Ok(Destination {
                host: HostPattern::Any,
                port: None,
            });
        }
        let (host, port, bracketed) = match text.strip_prefix('[') {
            Some(rest) => {
                let (host, port) = rest
                    .split_once("]:")
                    .ok_or_else(|| format!("`{text}`: a bracketed destination is [IPv6]:PORT"))?;
                (host, port, true)
            }
            None => {
                let (host, port) = text
                    .rsplit_once(':')
                    .ok_or_else(|| format!("`{text}`: a destination is HOST:PORT (or HOST:*)"))?;
                (host, port, false)
            }
        };
        let pattern = HostPattern::parse(host).map_err(|e| format!("`{text}`: {e}"))?;
        // On the written text: `[::ffff:10.0.0.5]` is kept as IPv4 but was IPv6.
        if bracketed != host.contains(':') {
            return Err(format!(
                "`{text}`: brackets are for IPv6 and IPv6 needs them, e.g. [fd00::/64]:22"
            ));
        }
        let port = match port {
            "*" => None,
            p => Some(
                Some(p)
                    .filter(|p| p.chars().all(|c| c.is_ascii_digit()))
                    .and_then(|p| p.parse::<u32>().ok())
                    .filter(|p| (1..=65535).contains(p))
                    .ok_or_else(|| format!("`{text}`: the port must be 1-65535 or *"))?,
            ),
        };
        Ok(Destination { host: pattern, port })
    }

    /// Whether a forward to (or, for `-R`, a listener on) `host`:`port` is covered.
    pub fn matches(&self, host: &str, port: u32) -> bool {
        self.port.is_none_or(|p| p == port) && self.host.matches(&Requested::classify(host))
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostPattern::Any => f.write_str("*"),
            HostPattern::Net(n) if n.prefix_len() == n.max_prefix_len() => write!(f, "{}", n.addr()),
            HostPattern::Net(n) => write!(f, "{n}"),
            HostPattern::AddrGlob { glob, .. } | HostPattern::Name(glob) => f.write_str(glob),
        }
    }
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let port = self.port.map_or("*".to_string(), |p| p.to_string());
        match &self.host {
            HostPattern::Any if self.port.is_none() => f.write_str("*"),
            h if h.is_v6() => write!(f, "[{h}]:{port}"),
            h => write!(f, "{h}:{port}"),
        }
    }
}

#[cfg(test)]
#[path = "destination_tests.rs"]
mod tests;
