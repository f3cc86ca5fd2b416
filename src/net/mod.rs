//! Network addresses: as users write them in flow files and settings, and the client's
//! address behind trusted proxies ([`client_ip`]).

pub mod client_ip;

/// The crypto behind every TLS connection (listeners, HTTPS calls, SMTP, PostgreSQL): rustls
/// with ring. Also installed as the process default, where reqwest looks for it; the first
/// call installs it, later ones find it there.
pub fn tls_provider() -> std::sync::Arc<rustls::crypto::CryptoProvider> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    rustls::crypto::CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| std::sync::Arc::new(rustls::crypto::ring::default_provider()))
}

/// An address or a CIDR range.
pub fn parse_net(s: &str) -> Option<ipnet::IpNet> {
    let s = s.trim();
    s.parse::<ipnet::IpNet>()
        .ok()
        .or_else(|| s.parse::<std::net::IpAddr>().ok().map(ipnet::IpNet::from))
}
