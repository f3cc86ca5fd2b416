//! Who may use the runs API, the dashboard's data and the metrics.
//!
//! With an API token: whoever presents it (`Authorization: Bearer …`), from anywhere.
//!
//! Without one, only a person on this machine, decided on the real client, not the TCP peer:
//! - a request that came through a proxy (`Forwarded`, `X-Forwarded-For`, `X-Real-IP`, `Via`,
//!   …) is local only if the proxy is a trusted one and the client it names is loopback — so
//!   behind nginx or Caddy on the same host the internet is not a loopback client;
//! - otherwise the TCP peer must be loopback;
//! - the `Host` must be one of this server's own names (loopback addresses, `localhost`, the
//!   listen address, the public URL's host), so a web page that re-points its own name at
//!   127.0.0.1 (DNS rebinding) is refused;
//! - a browser request sent from another site (`Origin`, `Sec-Fetch-Site: cross-site`) is refused.
//!
//! A reverse proxy that forwards without any forwarding header looks exactly like a local
//! client; `hookflow serve` warns about such setups, and the safe ones are an API token or a
//! separate admin listener (`--admin-listen 127.0.0.1:8081`) that the proxy does not reach.

use std::net::{IpAddr, SocketAddr};

use axum::http::{HeaderMap, StatusCode, header};
use ipnet::IpNet;
use subtle::ConstantTimeEq;

use super::ApiError;
use crate::net::client_ip::{canonical, forwarded_client};
use crate::secret::Secret;

/// Headers by which proxies say whom they forward for.
const FORWARDING: &[&str] = &[
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-real-ip",
    "x-client-ip",
    "true-client-ip",
    "cf-connecting-ip",
    "via",
];

/// The access rule of one server.
#[derive(Clone, Default)]
pub struct Access {
    pub token: Option<Secret>,
    pub trusted_proxies: Vec<IpNet>,
    /// Host names (lower-case, without port) besides loopback addresses and `localhost` that
    /// name this server.
    pub own_hosts: Vec<String>,
}

/// Why a request was refused.
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum Denied {
    #[error("a valid `Authorization: Bearer` token is required")]
    BadToken,
    #[error("without HOOKFLOW_API_TOKEN the API answers clients on this machine only; {0}")]
    NotLocal(String),
    #[error(
        "without HOOKFLOW_API_TOKEN the API answers only requests for this server's own names, not Host `{0}`"
    )]
    ForeignHost(String),
    #[error("without HOOKFLOW_API_TOKEN the API does not answer requests sent by other sites' pages ({0})")]
    CrossSite(String),
}

impl Access {
    pub fn check(&self, peer: SocketAddr, headers: &HeaderMap) -> Result<(), Denied> {
        if let Some(expected) = &self.token {
            let presented = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .unwrap_or("");
            let expected = expected.expose().as_bytes();
            return if presented.len() == expected.len() && bool::from(presented.as_bytes().ct_eq(expected)) {
                Ok(())
            } else {
                Err(Denied::BadToken)
            };
        }
        self.local_client(peer, headers)?;
        if let Some(host) = headers.get(header::HOST) {
            let host = host.to_str().unwrap_or("");
            if !self.is_own(host_part(host)) {
                return Err(Denied::ForeignHost(host.to_string()));
            }
        }
        if let Some(origin) = headers.get(header::ORIGIN) {
            let origin = origin.to_str().unwrap_or("");
            let host = origin.split_once("://").map_or(origin, |(_, rest)| rest);
            if !self.is_own(host_part(host)) {
                return Err(Denied::CrossSite(format!("Origin {origin}")));
            }
        }
        if headers
            .get("sec-fetch-site")
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"cross-site"))
        {
            return Err(Denied::CrossSite("Sec-Fetch-Site: cross-site".into()));
        }
        Ok(())
    }

    fn local_client(&self, peer: SocketAddr, headers: &HeaderMap) -> Result<(), Denied> {
        let forwarded = FORWARDING.iter().find(|h| headers.contains_key(**h));
        let peer_ip = canonical(peer.ip());
        match forwarded {
            None if peer_ip.is_loopback() => Ok(()),
            None => Err(Denied::NotLocal(format!("{peer_ip} is not"))),
            Some(h) if self.trusted_proxies.iter().any(|n| n.contains(&peer_ip)) => {
                match forwarded_client(peer, headers, &self.trusted_proxies) {
                    Some(client) if client.is_loopback() => Ok(()),
                    Some(client) => Err(Denied::NotLocal(format!("the proxy forwards for {client} ({h})"))),
                    None => Err(Denied::NotLocal(format!(
                        "the proxy does not say whom it forwards for ({h})"
                    ))),
                }
            }
            Some(h) => Err(Denied::NotLocal(format!(
                "this request came through a proxy ({h}); set an API token or use --admin-listen"
            ))),
        }
    }

    fn is_own(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        if host == "localhost" || host.ends_with(".localhost") {
            return true;
        }
        let literal = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = literal.parse::<IpAddr>()
            && canonical(ip).is_loopback()
        {
            return true;
        }
        self.own_hosts.iter().any(|h| *h == host || *h == literal)
    }
}

/// `example.com:8080` → `example.com`; `[::1]:8080` → `[::1]`.
fn host_part(authority: &str) -> &str {
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let authority = authority.split('/').next().unwrap_or("");
    if authority.starts_with('[') {
        return authority.split_inclusive(']').next().unwrap_or(authority);
    }
    authority.split(':').next().unwrap_or(authority)
}

impl From<Denied> for ApiError {
    fn from(d: Denied) -> ApiError {
        let (status, code) = match d {
            Denied::BadToken => (StatusCode::UNAUTHORIZED, "unauthorized"),
            _ => (StatusCode::FORBIDDEN, "forbidden"),
        };
        ApiError::new(status, code, d.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(ip: &str) -> SocketAddr {
        SocketAddr::new(ip.parse().unwrap(), 40000)
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    fn tokenless(trusted: &[&str]) -> Access {
        Access {
            token: None,
            trusted_proxies: trusted.iter().map(|n| n.parse().unwrap()).collect(),
            own_hosts: vec!["hooks.example.com".into()],
        }
    }

    #[test]
    fn forwarded_requests_are_not_local_unless_a_trusted_proxy_forwards_for_loopback() {
        let open = tokenless(&[]);
        let local = peer("127.0.0.1");
        assert_eq!(open.check(local, &headers(&[("host", "127.0.0.1:8080")])), Ok(()));
        for h in ["x-forwarded-for", "x-real-ip", "via"] {
            let hs = headers(&[(h, "203.0.113.9")]);
            assert!(matches!(open.check(local, &hs), Err(Denied::NotLocal(_))), "{h}");
        }
        let fwd = headers(&[("forwarded", "for=203.0.113.9")]);
        assert!(matches!(open.check(local, &fwd), Err(Denied::NotLocal(_))));
        // Behind a trusted proxy: the forwarded client decides.
        let proxied = tokenless(&["127.0.0.1/32"]);
        let outside = headers(&[("x-forwarded-for", "203.0.113.9")]);
        assert!(matches!(proxied.check(local, &outside), Err(Denied::NotLocal(_))));
        let spoofed = headers(&[("x-forwarded-for", "127.0.0.1, 203.0.113.9")]);
        assert!(matches!(proxied.check(local, &spoofed), Err(Denied::NotLocal(_))));
        let operator = headers(&[("x-forwarded-for", "::1"), ("host", "hooks.example.com")]);
        assert_eq!(proxied.check(local, &operator), Ok(()));
        let via_only = headers(&[("via", "1.1 proxy")]);
        assert!(matches!(
            proxied.check(local, &via_only),
            Err(Denied::NotLocal(_))
        ));
        let self_forwarded = headers(&[("x-forwarded-for", "127.0.0.1")]);
        assert_eq!(proxied.check(local, &self_forwarded), Ok(()));
        for remote in ["10.1.2.3", "192.168.1.10", "203.0.113.7", "2001:db8::1"] {
            assert!(
                matches!(
                    open.check(peer(remote), &HeaderMap::new()),
                    Err(Denied::NotLocal(_))
                ),
                "{remote}"
            );
        }
    }

    #[test]
    fn foreign_hosts_and_other_sites_are_refused_without_a_token() {
        let a = tokenless(&[]);
        let local = peer("::1");
        for ok in [
            "localhost:8080",
            "127.0.0.1",
            "[::1]:8080",
            "HOOKS.example.com",
            "app.localhost",
        ] {
            let hs = headers(&[("host", ok)]);
            assert_eq!(a.check(local, &hs), Ok(()), "{ok}");
        }
        let rebound = headers(&[("host", "attacker.example:8080")]);
        assert_eq!(
            a.check(local, &rebound),
            Err(Denied::ForeignHost("attacker.example:8080".into()))
        );
        let cross = headers(&[("host", "127.0.0.1:8080"), ("origin", "https://attacker.example")]);
        assert!(matches!(a.check(local, &cross), Err(Denied::CrossSite(_))));
        let same = headers(&[("host", "127.0.0.1:8080"), ("origin", "http://127.0.0.1:8080")]);
        assert_eq!(a.check(local, &same), Ok(()));
        let fetch = headers(&[("sec-fetch-site", "cross-site")]);
        assert!(matches!(a.check(local, &fetch), Err(Denied::CrossSite(_))));
    }

    #[test]
    fn a_token_is_checked_from_anywhere() {
        let a = Access {
            token: Some(Secret::from("t0ken")),
            ..Access::default()
        };
        let far = peer("203.0.113.9");
        assert_eq!(
            a.check(far, &headers(&[("authorization", "Bearer t0ken")])),
            Ok(())
        );
        assert_eq!(
            a.check(far, &headers(&[("authorization", "Bearer t0ke")])),
            Err(Denied::BadToken)
        );
        assert_eq!(
            a.check(far, &headers(&[("authorization", "Bearer t0ken-longer")])),
            Err(Denied::BadToken)
        );
        assert_eq!(
            a.check(peer("127.0.0.1"), &HeaderMap::new()),
            Err(Denied::BadToken)
        );
    }

    #[test]
    fn host_parts() {
        assert_eq!(host_part("example.com:80"), "example.com");
        assert_eq!(host_part("[::1]:8080"), "[::1]");
        assert_eq!(host_part("u@h:1/x"), "h");
        assert_eq!(host_part("plain"), "plain");
    }
}
