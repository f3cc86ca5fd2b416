//! Egress policy for `http` actions: a flow must not be able to make hookflow call into the
//! network it runs in. By default no connection goes to loopback, private, shared (CGNAT),
//! link-local (cloud metadata at 169.254.169.254), multicast, unspecified or reserved
//! addresses — checked on the address actually connected to, after DNS resolution (so a name
//! that resolves, or re-resolves, to an internal address is refused too). `--egress-allow`
//! lists the internal ranges a user does want to reach.
//!
//! The classification is pure and unit-tested; [`PolicyResolver`] applies it to every DNS
//! answer reqwest gets, and [`Policy::check_url`] to IP-literal URLs, which skip DNS.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;

/// Why an address is internal, or `None` for a public address.
pub fn internal_kind(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => v4_kind(v4),
        IpAddr::V6(v6) => {
            // Addresses that embed an IPv4 address are judged by it.
            if let Some(v4) = v6.to_ipv4_mapped() {
                return v4_kind(v4);
            }
            let s = v6.segments();
            if s[..6] == [0, 0, 0, 0, 0, 0] && !v6.is_loopback() && !v6.is_unspecified() {
                // IPv4-compatible (deprecated): ::a.b.c.d
                return v4_kind(Ipv4Addr::new(
                    (s[6] >> 8) as u8,
                    s[6] as u8,
                    (s[7] >> 8) as u8,
                    s[7] as u8,
                ));
            }
            if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
                // NAT64 well-known prefix 64:ff9b::/96
                return v4_kind(Ipv4Addr::new(
                    (s[6] >> 8) as u8,
                    s[6] as u8,
                    (s[7] >> 8) as u8,
                    s[7] as u8,
                ));
            }
            v6_kind(v6)
        }
    }
}

fn v4_kind(ip: Ipv4Addr) -> Option<&'static str> {
    let o = ip.octets();
    if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_private() {
        Some("private")
    } else if ip.is_link_local() {
        Some("link-local (cloud metadata)")
    } else if o[0] == 100 && (o[1] & 0xc0) == 64 {
        Some("shared address space (CGNAT)")
    } else if ip.is_multicast() {
        Some("multicast")
    } else if ip.is_unspecified() || o[0] == 0 {
        Some("unspecified (\"this network\")")
    } else if ip.is_broadcast() || o[0] >= 240 {
        Some("reserved")
    } else if o[0] == 192 && o[1] == 0 && o[2] == 0 {
        Some("IETF protocol assignments")
    } else if (o[0] == 198 && (o[1] & 0xfe) == 18) || ip.is_documentation() {
        Some("benchmarking or documentation")
    } else {
        None
    }
}

fn v6_kind(ip: Ipv6Addr) -> Option<&'static str> {
    let s = ip.segments();
    if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_unspecified() {
        Some("unspecified")
    } else if (s[0] & 0xfe00) == 0xfc00 {
        Some("unique local (private)")
    } else if (s[0] & 0xffc0) == 0xfe80 {
        Some("link-local")
    } else if (s[0] & 0xffc0) == 0xfec0 {
        Some("site-local (deprecated private)")
    } else if ip.is_multicast() {
        Some("multicast")
    } else if s[0] == 0x2001 && s[1] == 0x0db8 {
        Some("documentation")
    } else {
        None
    }
}

/// What `http` actions may connect to.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// Internal ranges allowed anyway (`--egress-allow`).
    pub allow: Vec<IpNet>,
}

/// A connection refused by the policy: never retried (the same address would be refused).
#[derive(Debug, thiserror::Error)]
#[error(
    "refused by the egress policy: {target} is {kind}; allow it with --egress-allow if it is meant to be reached"
)]
pub struct Denied {
    pub target: String,
    pub kind: &'static str,
}

impl Policy {
    /// `Err` when `ip` is internal and not allowed.
    pub fn check(&self, host: &str, ip: IpAddr) -> Result<(), Denied> {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match internal_kind(ip) {
            Some(kind) if !self.allow.iter().any(|n| n.contains(&ip)) => Err(Denied {
                target: if host == ip.to_string() {
                    ip.to_string()
                } else {
                    format!("{host} ({ip})")
                },
                kind,
            }),
            _ => Ok(()),
        }
    }

    /// Checks a URL whose host is an IP literal (those skip DNS). The `url` crate has already
    /// normalised odd forms (`http://2130706433/`, `http://0177.0.0.1/`) to dotted quads.
    pub fn check_url(&self, url: &reqwest::Url) -> Result<(), Denied> {
        match url.host() {
            Some(url::Host::Ipv4(v4)) => self.check(&v4.to_string(), IpAddr::V4(v4)),
            Some(url::Host::Ipv6(v6)) => self.check(&v6.to_string(), IpAddr::V6(v6)),
            _ => Ok(()),
        }
    }
}

/// Why the policy refuses every connection to a literal action URL (one with no template), if
/// it does: for the warnings of validate and serve. `localhost` counts as loopback; other
/// names are only known when they resolve.
pub fn refuses_literal(url: &url::Url, policy: &Policy) -> Option<Denied> {
    match url.host() {
        Some(url::Host::Domain(d)) if d == "localhost" || d.ends_with(".localhost") => {
            policy.check(d, IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)).err()
        }
        _ => policy.check_url(url).err(),
    }
}

/// reqwest's DNS resolution with the policy applied to every answer.
pub struct PolicyResolver {
    pub policy: Arc<Policy>,
}

impl reqwest::dns::Resolve for PolicyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = Arc::clone(&self.policy);
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let mut allowed = Vec::new();
            let mut denied = None;
            for a in addrs {
                match policy.check(&host, a.ip()) {
                    Ok(()) => allowed.push(a),
                    Err(d) => denied = Some(d),
                }
            }
            match (allowed.is_empty(), denied) {
                (true, Some(d)) => Err(Box::new(d) as Box<dyn std::error::Error + Send + Sync>),
                _ => Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs),
            }
        })
    }
}

/// The policy's refusal somewhere in an error's chain, if that is what failed.
pub fn find_denied<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a Denied> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(d) = err.downcast_ref::<Denied>() {
            return Some(d);
        }
        cur = err.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(s: &str) -> Option<&'static str> {
        internal_kind(s.parse().unwrap())
    }

    #[test]
    fn internal_addresses_are_recognised() {
        for (ip, what) in [
            ("127.0.0.1", "loopback"),
            ("127.255.0.9", "loopback"),
            ("10.1.2.3", "private"),
            ("172.16.0.1", "private"),
            ("172.31.255.255", "private"),
            ("192.168.1.1", "private"),
            ("169.254.169.254", "link-local (cloud metadata)"),
            ("100.64.0.1", "shared address space (CGNAT)"),
            ("224.0.0.1", "multicast"),
            ("0.0.0.0", "unspecified (\"this network\")"),
            ("255.255.255.255", "reserved"),
            ("::1", "loopback"),
            ("::", "unspecified"),
            ("fd00::1", "unique local (private)"),
            ("fe80::1", "link-local"),
            ("ff02::1", "multicast"),
            // IPv4 inside IPv6 is judged as IPv4.
            ("::ffff:127.0.0.1", "loopback"),
            ("::ffff:169.254.169.254", "link-local (cloud metadata)"),
            ("::ffff:10.0.0.1", "private"),
            ("::127.0.0.1", "loopback"),
            ("64:ff9b::a9fe:a9fe", "link-local (cloud metadata)"),
        ] {
            assert_eq!(kind(ip), Some(what), "{ip}");
        }
        for public in [
            "93.184.215.14",
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "2a00:1450:4001::200e",
            "::ffff:8.8.8.8",
        ] {
            assert_eq!(kind(public), None, "{public}");
        }
    }

    #[test]
    fn odd_literal_forms_are_normalised_before_the_check() {
        let policy = Policy::default();
        for url in [
            "http://2130706433/",
            "http://0177.0.0.1/",
            "http://0x7f.1/",
            "http://127.1/",
            "http://[::ffff:127.0.0.1]/",
            "http://[::ffff:7f00:1]/",
            "http://169.254.169.254/latest/meta-data/",
            "http://0/",
        ] {
            let u = reqwest::Url::parse(url).unwrap();
            assert!(policy.check_url(&u).is_err(), "{url} → {:?}", u.host());
        }
        assert!(
            policy
                .check_url(&reqwest::Url::parse("https://example.com/").unwrap())
                .is_ok()
        );
        assert!(
            policy
                .check_url(&reqwest::Url::parse("http://93.184.215.14/").unwrap())
                .is_ok()
        );
    }

    #[test]
    fn the_allowlist_opens_only_what_it_names() {
        let policy = Policy {
            allow: vec!["127.0.0.1/32".parse().unwrap(), "10.20.0.0/16".parse().unwrap()],
        };
        assert!(policy.check("127.0.0.1", "127.0.0.1".parse().unwrap()).is_ok());
        assert!(
            policy
                .check("localhost", "::ffff:127.0.0.1".parse().unwrap())
                .is_ok()
        );
        assert!(policy.check("x", "127.0.0.2".parse().unwrap()).is_err());
        assert!(policy.check("x", "10.20.3.4".parse().unwrap()).is_ok());
        let err = policy
            .check("meta", "169.254.169.254".parse().unwrap())
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "refused by the egress policy: meta (169.254.169.254) is link-local (cloud metadata); allow it with --egress-allow if it is meant to be reached"
        );
    }
}
