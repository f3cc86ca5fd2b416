//! Network addresses: as users write them in flow files and settings, and the client's
//! address behind trusted proxies ([`client_ip`]).

pub mod client_ip;

/// An address or a CIDR range.
pub fn parse_net(s: &str) -> Option<ipnet::IpNet> {
    let s = s.trim();
    s.parse::<ipnet::IpNet>()
        .ok()
        .or_else(|| s.parse::<std::net::IpAddr>().ok().map(ipnet::IpNet::from))
}
