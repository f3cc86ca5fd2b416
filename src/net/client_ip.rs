//! Which address a request came from. The TCP peer, unless the peer is a configured trusted
//! proxy: then the nearest untrusted address in `X-Forwarded-For` (or `Forwarded: for=`),
//! walking from the right, since only the entries our own proxies appended can be believed.

use std::net::{IpAddr, SocketAddr};

use axum::http::HeaderMap;
use ipnet::IpNet;

pub fn client_ip(peer: SocketAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    forwarded_client(peer, headers, trusted).unwrap_or_else(|| canonical(peer.ip()))
}

/// The client a trusted proxy says it forwards for: the nearest untrusted hop from the right
/// (or the first hop when every one is ours). `None` when the peer is not a trusted proxy or
/// names nobody.
pub fn forwarded_client(peer: SocketAddr, headers: &HeaderMap, trusted: &[IpNet]) -> Option<IpAddr> {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(&canonical(peer.ip())) {
        return None;
    }
    let mut hops: Vec<IpAddr> = Vec::new();
    for v in headers.get_all("forwarded") {
        for element in v.to_str().unwrap_or("").split(',') {
            for pair in element.split(';') {
                if let Some((k, val)) = pair.trim().split_once('=')
                    && k.trim().eq_ignore_ascii_case("for")
                    && let Some(ip) = parse_node(val)
                {
                    hops.push(ip);
                }
            }
        }
    }
    if hops.is_empty() {
        for v in headers.get_all("x-forwarded-for") {
            hops.extend(v.to_str().unwrap_or("").split(',').filter_map(parse_node));
        }
    }
    hops.iter()
        .rev()
        .find(|ip| !is_trusted(ip))
        .or(hops.first())
        .copied()
}

/// An address as proxies write it: `203.0.113.7`, `"[2001:db8::1]:4711"`, `198.51.100.1:80`.
fn parse_node(s: &str) -> Option<IpAddr> {
    let s = s.trim().trim_matches('"');
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Some(canonical(sa.ip()));
    }
    let inner = s.strip_prefix('[')?.split(']').next()?;
    inner.parse::<IpAddr>().ok().map(canonical)
}

/// IPv4-mapped IPv6 (`::ffff:203.0.113.7`) as plain IPv4, so one allowlist entry covers both.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(s: &[&str]) -> Vec<IpNet> {
        s.iter().map(|n| n.parse().unwrap()).collect()
    }
    fn hdrs(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }
    fn peer(s: &str) -> SocketAddr {
        SocketAddr::new(s.parse().unwrap(), 5000)
    }

    #[test]
    fn forwarded_headers_count_only_behind_a_trusted_proxy() {
        let h = hdrs(&[("x-forwarded-for", "198.51.100.9, 203.0.113.7")]);
        // Not a trusted proxy: the header is ignored.
        assert_eq!(
            client_ip(peer("192.0.2.1"), &h, &[]),
            "192.0.2.1".parse::<IpAddr>().unwrap()
        );
        // Trusted: the rightmost address that is not one of ours.
        let trusted = nets(&["10.0.0.0/8"]);
        assert_eq!(
            client_ip(peer("10.0.0.2"), &h, &trusted),
            "203.0.113.7".parse::<IpAddr>().unwrap()
        );
        let h = hdrs(&[("x-forwarded-for", "198.51.100.9, 10.0.0.5")]);
        assert_eq!(
            client_ip(peer("10.0.0.2"), &h, &trusted),
            "198.51.100.9".parse::<IpAddr>().unwrap()
        );
        // A spoofed left-most entry cannot win over what our proxy appended.
        let h = hdrs(&[("x-forwarded-for", "127.0.0.1, 203.0.113.7")]);
        assert_eq!(
            client_ip(peer("10.0.0.2"), &h, &trusted),
            "203.0.113.7".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn rfc7239_forwarded_and_odd_forms() {
        let trusted = nets(&["10.0.0.0/8", "::1/128"]);
        let h = hdrs(&[(
            "forwarded",
            r#"for="[2001:db8::7]:4711";proto=https, for=10.0.0.9"#,
        )]);
        assert_eq!(
            client_ip(peer("::1"), &h, &trusted),
            "2001:db8::7".parse::<IpAddr>().unwrap()
        );
        let h = hdrs(&[("forwarded", "for=unknown")]);
        assert_eq!(
            client_ip(peer("10.0.0.2"), &h, &trusted),
            "10.0.0.2".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            client_ip(peer("::ffff:192.0.2.5"), &HeaderMap::new(), &[]),
            "192.0.2.5".parse::<IpAddr>().unwrap()
        );
    }
}
