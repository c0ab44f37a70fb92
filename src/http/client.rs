//! Who the client is: the socket peer, unless the peer is a trusted proxy
//! (`ROAMPAY_TRUSTED_PROXIES`); then the rightmost hop of `Forwarded` (or
//! `X-Forwarded-For`) that is not itself a trusted proxy. Forwarding headers from
//! anyone else are ignored: a client cannot choose its own address.

use std::net::{IpAddr, Ipv6Addr};

use actix_web::HttpRequest;
use ipnet::IpNet;

/// The proxies whose forwarding headers are believed.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Comma-separated CIDRs (a bare address is a /32 or /128).
    pub fn parse(list: &str) -> Result<Self, String> {
        let mut nets = Vec::new();
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let net = item
                .parse::<IpNet>()
                .or_else(|_| item.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    format!("ROAMPAY_TRUSTED_PROXIES: {item:?} is not an address or CIDR")
                })?;
            nets.push(net);
        }
        Ok(Self(nets))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|n| n.contains(&ip))
    }

    /// The client of `req` (see the module).
    pub fn client_of(&self, req: &HttpRequest) -> IpAddr {
        let peer = req
            .peer_addr()
            .map(|a| canonical(a.ip()))
            .unwrap_or(IpAddr::from([0, 0, 0, 0]));
        if !self.trusts(peer) {
            return peer;
        }
        let hops = forwarded_hops(req);
        let mut client = peer;
        for hop in hops.iter().rev() {
            match hop {
                Some(ip) if self.trusts(*ip) => client = *ip,
                Some(ip) => return *ip,
                // An obfuscated or unreadable hop: the last proxy we trust is as far as
                // we can tell.
                None => return client,
            }
        }
        client
    }
}

/// The hops named by `Forwarded` (RFC 7239), else by `X-Forwarded-For`, left to right;
/// `None` for a hop that is not an address.
fn forwarded_hops(req: &HttpRequest) -> Vec<Option<IpAddr>> {
    let headers = req.headers();
    let forwarded: Vec<&str> = headers
        .get_all("forwarded")
        .filter_map(|v| v.to_str().ok())
        .collect();
    if !forwarded.is_empty() {
        return forwarded
            .iter()
            .flat_map(|v| v.split(','))
            .map(|element| {
                element
                    .split(';')
                    .filter_map(|pair| pair.trim().split_once('='))
                    .find(|(k, _)| k.eq_ignore_ascii_case("for"))
                    .and_then(|(_, v)| node_ip(v))
            })
            .collect();
    }
    headers
        .get_all("x-forwarded-for")
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(node_ip)
        .collect()
}

/// An address from a `for=` node or an `X-Forwarded-For` entry: quotes, brackets and
/// ports removed.
fn node_ip(raw: &str) -> Option<IpAddr> {
    let v = raw.trim().trim_matches('"');
    if let Some(rest) = v.strip_prefix('[') {
        return rest.split(']').next()?.parse().ok().map(canonical);
    }
    if let Ok(ip) = v.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    // IPv4 with a port.
    let (host, _port) = v.rsplit_once(':')?;
    host.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

/// An IPv4 address mapped into IPv6 is the IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// What the rate limiter counts: an IPv4 address, or an IPv6 client's /64 (one
/// subscriber gets a whole /64 and could otherwise rotate through it).
pub fn rate_key(ip: IpAddr) -> IpAddr {
    match canonical(ip) {
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(prefix))
        }
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    fn req(peer: &str, headers: &[(&str, &str)]) -> HttpRequest {
        let mut r = TestRequest::default().peer_addr(peer.parse().unwrap());
        for (k, v) in headers {
            r = r.insert_header((*k, *v));
        }
        r.to_http_request()
    }

    #[test]
    fn forwarding_headers_count_only_from_trusted_proxies() {
        let none = TrustedProxies::default();
        let lb = TrustedProxies::parse("10.0.0.0/8, 192.168.1.7").unwrap();
        let xff = [("x-forwarded-for", "203.0.113.9, 10.1.2.3")];
        // Anyone may send the header; only a trusted peer is believed.
        assert_eq!(
            none.client_of(&req("10.0.0.5:1", &xff)).to_string(),
            "10.0.0.5"
        );
        assert_eq!(
            lb.client_of(&req("198.51.100.1:1", &xff)).to_string(),
            "198.51.100.1"
        );
        // The rightmost hop that is not a trusted proxy.
        assert_eq!(
            lb.client_of(&req("10.0.0.5:1", &xff)).to_string(),
            "203.0.113.9"
        );
        let spoofed = [("x-forwarded-for", "1.2.3.4, 203.0.113.9")];
        assert_eq!(
            lb.client_of(&req("10.0.0.5:1", &spoofed)).to_string(),
            "203.0.113.9"
        );
        // Forwarded wins over X-Forwarded-For; IPv6 in brackets with a port.
        let fwd = [
            (
                "forwarded",
                "for=\"[2001:db8:cafe::17]:4711\";proto=https, for=192.168.1.7",
            ),
            ("x-forwarded-for", "1.2.3.4"),
        ];
        assert_eq!(
            lb.client_of(&req("192.168.1.7:1", &fwd)).to_string(),
            "2001:db8:cafe::17"
        );
        // An obfuscated hop: the last trusted proxy.
        let hidden = [("forwarded", "for=_hidden, for=10.9.9.9")];
        assert_eq!(
            lb.client_of(&req("10.0.0.5:1", &hidden)).to_string(),
            "10.9.9.9"
        );
        assert!(TrustedProxies::parse("10.0.0.0/33").is_err());
    }

    #[test]
    fn ipv6_clients_are_limited_per_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(rate_key(a), rate_key(b));
        assert_ne!(rate_key(a), rate_key(other));
        let mapped: IpAddr = "::ffff:203.0.113.9".parse().unwrap();
        assert_eq!(rate_key(mapped).to_string(), "203.0.113.9");
    }
}
