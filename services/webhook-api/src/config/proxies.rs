//! `TRUSTED_PROXIES`: the addresses whose `X-Forwarded-For` is believed (nginx in front of the
//! instances). Everything counted per client (refused sign-ins and operator calls) counts the
//! address nginx saw, not nginx's own.

use std::net::IpAddr;

use ipnet::IpNet;

use super::env::Env;
use super::ConfigError;

const VAR: &str = "TRUSTED_PROXIES";
/// Loopback and the private networks: where nginx stands in the local cluster, in compose
/// and in a Swarm stack (the instances are published on loopback only).
const DEFAULT: &str = "127.0.0.0/8,::1/128,10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,fc00::/7";

#[derive(Debug, Clone)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    pub(crate) fn from_env(env: &Env<'_>) -> Result<Self, ConfigError> {
        let raw = env.optional(VAR).unwrap_or_else(|| DEFAULT.to_string());
        Self::parse(&raw).map_err(|problem| ConfigError::new(VAR, problem))
    }

    /// Networks (`10.0.0.0/8`) or single addresses, separated by commas; `none` trusts no one.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.trim().eq_ignore_ascii_case("none") {
            return Ok(Self(Vec::new()));
        }
        text.split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .map(|entry| {
                entry
                    .parse::<IpNet>()
                    .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| {
                        format!("{entry:?} is not an address or a network (10.0.0.0/8), nor `none`")
                    })
            })
            .collect::<Result<_, _>>()
            .map(Self)
    }

    pub fn trusts(&self, address: IpAddr) -> bool {
        let address = canonical(address);
        self.0.iter().any(|network| network.contains(&address))
    }

    /// The client's address: the TCP peer, unless it is a trusted proxy; then, walking its
    /// `X-Forwarded-For` from the right (each proxy appends who it heard from), the first
    /// address that is not itself a trusted proxy. Entries left of that are the client's own
    /// words and never believed.
    pub fn client_address(&self, peer: IpAddr, forwarded_for: &[&str]) -> IpAddr {
        let mut client = canonical(peer);
        if !self.trusts(client) {
            return client;
        }
        let hops = forwarded_for
            .iter()
            .flat_map(|header| header.split(','))
            .rev()
            .map(str::trim);
        for hop in hops {
            let Ok(address) = hop.parse::<IpAddr>() else {
                // A malformed entry: nothing left of it can be told apart from a forgery.
                return client;
            };
            client = canonical(address);
            if !self.trusts(client) {
                return client;
            }
        }
        client
    }
}

/// An IPv4 client seen through an IPv6 socket (`::ffff:192.0.2.1`) is that IPv4 address.
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn a_trusted_proxy_is_looked_through_and_a_client_cannot_forge_its_way_out() {
        let trusted = TrustedProxies::parse("127.0.0.1, 10.0.0.0/8").unwrap();
        // nginx on loopback heard 203.0.113.7.
        assert_eq!(
            trusted.client_address(ip("127.0.0.1"), &["203.0.113.7"]),
            ip("203.0.113.7")
        );
        // The client wrote its own X-Forwarded-For: nginx appended the real address.
        assert_eq!(
            trusted.client_address(ip("127.0.0.1"), &["198.51.100.1, 203.0.113.7"]),
            ip("203.0.113.7")
        );
        // Two proxies of ours (an outer one on 10.x, then nginx).
        assert_eq!(
            trusted.client_address(ip("::ffff:127.0.0.1"), &["198.51.100.9, 10.1.2.3"]),
            ip("198.51.100.9")
        );
        // Straight to the instance, not through a proxy: the header is the sender's word.
        assert_eq!(
            trusted.client_address(ip("203.0.113.8"), &["127.0.0.1"]),
            ip("203.0.113.8")
        );
        // Garbage stops the walk at the last address a trusted proxy vouched for.
        assert_eq!(
            trusted.client_address(ip("127.0.0.1"), &["203.0.113.7, nonsense"]),
            ip("127.0.0.1")
        );
        let nobody = TrustedProxies::parse("none").unwrap();
        assert_eq!(
            nobody.client_address(ip("127.0.0.1"), &["203.0.113.7"]),
            ip("127.0.0.1")
        );
        assert!(TrustedProxies::parse("10.0.0.0/33").is_err());
        assert!(TrustedProxies::parse("nginx").is_err());
        assert!(TrustedProxies::parse(DEFAULT)
            .unwrap()
            .trusts(ip("172.18.0.5")));
    }
}
