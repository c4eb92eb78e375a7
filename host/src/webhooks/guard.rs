//! The SSRF guard: a callback URL is parsed strictly (http or https, a host, no user
//! information), its host resolved once per attempt, and the attempt refused when ANY resolved
//! address is not a public unicast address — loopback, private, link-local (the cloud metadata
//! endpoint 169.254.169.254 included), CGNAT, unique-local, documentation, benchmarking,
//! unspecified, broadcast, multicast, reserved, or an IPv6 form embedding one of those. The
//! request then goes to one of the vetted addresses (never a second resolution, so a DNS answer
//! cannot change between the check and the connection), with the original `Host` and TLS server
//! name.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Why a destination cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GuardError {
    /// The URL is not an absolute http(s) URL with a host.
    #[error("invalid callback URL: {0}")]
    InvalidUrl(String),
    /// The destination is not allowed (final: retrying cannot help).
    #[error("refused destination {host}: {reason}")]
    Refused {
        /// The URL's host.
        host: String,
        /// Which address, and why.
        reason: String,
    },
    /// The host could not be resolved (retryable).
    #[error("cannot resolve {host}: {reason}")]
    Resolve {
        /// The URL's host.
        host: String,
        /// The resolver's error.
        reason: String,
    },
}

/// A parsed callback URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `https` (TLS) or `http`.
    pub https: bool,
    /// The host, without IPv6 brackets.
    pub host: String,
    /// The port (explicit, or 80/443).
    pub port: u16,
    /// The `Host` header: the host, with the port when it is not the scheme's default.
    pub host_header: String,
    /// Path and query (`/` when empty).
    pub path_and_query: String,
}

impl Target {
    /// Parses and checks a callback URL.
    pub fn parse(url: &str) -> Result<Self, GuardError> {
        let invalid = |why: &str| GuardError::InvalidUrl(format!("`{url}`: {why}"));
        let uri: http::Uri = url.trim().parse().map_err(|_| invalid("not a URL"))?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(invalid("only http:// and https:// are allowed")),
        };
        let authority = uri.authority().ok_or_else(|| invalid("no host"))?;
        if authority.as_str().contains('@') {
            return Err(invalid("user information is not allowed"));
        }
        let raw_host = authority.host();
        let host = raw_host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(raw_host)
            .to_ascii_lowercase();
        if host.is_empty() {
            return Err(invalid("no host"));
        }
        let default_port = if https { 443 } else { 80 };
        let port = authority.port_u16().unwrap_or(default_port);
        if port == 0 {
            return Err(invalid("port 0"));
        }
        let shown_host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host.clone()
        };
        let host_header = if port == default_port {
            shown_host
        } else {
            format!("{shown_host}:{port}")
        };
        let path_and_query = uri
            .path_and_query()
            .map(|p| p.as_str())
            .filter(|p| !p.is_empty())
            .unwrap_or("/")
            .to_owned();
        Ok(Self {
            https,
            host,
            port,
            host_header,
            path_and_query,
        })
    }

    /// Resolves the host (an IP literal is used as is) and vets every address; the vetted
    /// addresses, in the resolver's order.
    pub async fn resolve(&self, allow_private: bool) -> Result<Vec<SocketAddr>, GuardError> {
        let addrs: Vec<SocketAddr> = match self.host.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, self.port)],
            Err(_) => tokio::net::lookup_host((self.host.as_str(), self.port))
                .await
                .map_err(|e| GuardError::Resolve {
                    host: self.host.clone(),
                    reason: e.to_string(),
                })?
                .collect(),
        };
        if addrs.is_empty() {
            return Err(GuardError::Resolve {
                host: self.host.clone(),
                reason: "no addresses".to_owned(),
            });
        }
        for addr in &addrs {
            if let Some(why) = refusal(addr.ip(), allow_private) {
                return Err(GuardError::Refused {
                    host: self.host.clone(),
                    reason: format!("{} is {why}", addr.ip()),
                });
            }
        }
        Ok(addrs)
    }
}

/// Why `ip` may not be a webhook destination, or `None` when it may. `allow_private` lets
/// through everything except unspecified, broadcast and multicast addresses.
pub fn refusal(ip: IpAddr, allow_private: bool) -> Option<&'static str> {
    let reason = classify(ip)?;
    let always = matches!(reason, UNSPECIFIED | BROADCAST | MULTICAST);
    (always || !allow_private).then_some(reason)
}

const UNSPECIFIED: &str = "an unspecified address";
const BROADCAST: &str = "the broadcast address";
const MULTICAST: &str = "a multicast address";

/// The special-purpose class of `ip`, or `None` for a public unicast address.
fn classify(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        _ if ip.is_unspecified() => UNSPECIFIED,
        _ if ip.is_broadcast() => BROADCAST,
        (0, _, _) => "in 0.0.0.0/8 (this network)",
        (10, _, _) => "private (10.0.0.0/8)",
        (100, 64..=127, _) => "shared address space (100.64.0.0/10, CGNAT)",
        (127, _, _) => "loopback",
        (169, 254, _) => "link-local (169.254.0.0/16, cloud metadata)",
        (172, 16..=31, _) => "private (172.16.0.0/12)",
        (192, 0, 0) => "IETF protocol assignments (192.0.0.0/24)",
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => "documentation",
        (192, 88, 99) => "6to4 relay anycast (192.88.99.0/24)",
        (192, 168, _) => "private (192.168.0.0/16)",
        (198, 18..=19, _) => "benchmarking (198.18.0.0/15)",
        (224..=239, _, _) => MULTICAST,
        (240..=255, _, _) => "reserved (240.0.0.0/4)",
        _ => return None,
    })
}

fn classify_v6(ip: Ipv6Addr) -> Option<&'static str> {
    if ip.is_unspecified() {
        return Some(UNSPECIFIED);
    }
    if ip.is_loopback() {
        return Some("loopback");
    }
    let s = ip.segments();
    // Forms that embed an IPv4 address are vetted as that address.
    let embedded = if let Some(v4) = ip.to_ipv4_mapped() {
        // ::ffff:a.b.c.d
        Some(v4)
    } else if s[..6] == [0; 6] {
        // IPv4-compatible ::a.b.c.d (deprecated).
        Some(v4_from(s[6], s[7]))
    } else if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        // NAT64 well-known prefix 64:ff9b::/96.
        Some(v4_from(s[6], s[7]))
    } else if s[0] == 0x2002 {
        // 6to4 2002:a.b.c.d::/48.
        Some(v4_from(s[1], s[2]))
    } else {
        None
    };
    if let Some(v4) = embedded {
        return classify_v4(v4);
    }
    Some(match s[0] {
        0xff00..=0xffff => MULTICAST,
        0xfe80..=0xfebf => "link-local (fe80::/10)",
        0xfec0..=0xfeff => "site-local (fec0::/10)",
        0xfc00..=0xfdff => "unique local (fc00::/7)",
        0x0064 if s[1] == 0xff9b && s[2] == 1 => "local-use NAT64 (64:ff9b:1::/48)",
        0x0100 if s[1..4] == [0; 3] => "discard-only (100::/64)",
        0x2001 if s[1] < 0x0200 => "IETF protocol assignments (2001::/23)",
        0x2001 if s[1] == 0x0db8 => "documentation (2001:db8::/32)",
        0x3fff if s[1] < 0x1000 => "documentation (3fff::/20)",
        0x2000..=0x3fff => return None,
        _ => "not global unicast (outside 2000::/3)",
    })
}

fn v4_from(high: u16, low: u16) -> Ipv4Addr {
    let [a, b] = high.to_be_bytes();
    let [c, d] = low.to_be_bytes();
    Ipv4Addr::new(a, b, c, d)
}
