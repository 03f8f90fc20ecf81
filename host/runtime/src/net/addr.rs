//! Where a service is reached: a host name or an IP address, and a port, as a deployment
//! advertises it. Names are resolved when a link is opened (so a service may move to another
//! address behind the same name); a service listens where it is told (`--listen`), which need
//! not be the address it is reached at (NAT, containers).

use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

/// A service's advertised address: `host:port`, `a.b.c.d:port` or `[v6]:port`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ServiceAddr {
    host: String,
    port: u16,
}

/// Why a text is not a service address.
#[derive(Debug, thiserror::Error)]
#[error("{text:?} is not HOST:PORT ({why})")]
pub struct BadServiceAddr {
    text: String,
    why: &'static str,
}

impl ServiceAddr {
    /// The host: a name or an IP address (IPv6 without brackets).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The address itself when the host is an IP address; `None` for a name.
    pub fn ip(&self) -> Option<SocketAddr> {
        self.host
            .parse::<IpAddr>()
            .ok()
            .map(|ip| SocketAddr::new(ip, self.port))
    }

    /// Resolves the host (DNS, `/etc/hosts`) to its first address.
    ///
    /// # Errors
    /// When the name does not resolve.
    pub async fn resolve(&self) -> std::io::Result<SocketAddr> {
        if let Some(a) = self.ip() {
            return Ok(a);
        }
        tokio::net::lookup_host((self.host.as_str(), self.port))
            .await?
            .next()
            .ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("{} resolves to no address", self.host),
                )
            })
    }
}

impl FromStr for ServiceAddr {
    type Err = BadServiceAddr;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = |why| BadServiceAddr {
            text: text.to_string(),
            why,
        };
        let (host, port) = if let Some(rest) = text.strip_prefix('[') {
            let (v6, port) = rest.split_once("]:").ok_or_else(|| bad("[IPv6]:PORT"))?;
            v6.parse::<std::net::Ipv6Addr>()
                .map_err(|_| bad("not an IPv6 address in brackets"))?;
            (v6, port)
        } else {
            let (host, port) = text.rsplit_once(':').ok_or_else(|| bad("no port"))?;
            if host.contains(':') {
                return Err(bad("an IPv6 address goes in brackets"));
            }
            // A host name as DNS allows it: labels of letters, digits and '-', dot-separated.
            let label_ok = |l: &str| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    && !l.starts_with('-')
                    && !l.ends_with('-')
            };
            if host.len() > 253 || !host.trim_end_matches('.').split('.').all(label_ok) {
                return Err(bad("not a host name or an IP address"));
            }
            (host, port)
        };
        let port = port
            .parse::<u16>()
            .ok()
            .filter(|&p| p != 0)
            .ok_or_else(|| bad("the port is not in 1..=65535"))?;
        Ok(ServiceAddr {
            host: host.to_string(),
            port,
        })
    }
}

impl TryFrom<String> for ServiceAddr {
    type Error = BadServiceAddr;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<ServiceAddr> for String {
    fn from(a: ServiceAddr) -> String {
        a.to_string()
    }
}

impl From<SocketAddr> for ServiceAddr {
    fn from(a: SocketAddr) -> Self {
        ServiceAddr {
            host: a.ip().to_string(),
            port: a.port(),
        }
    }
}

impl fmt::Display for ServiceAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_addresses_parse_and_print_back() {
        for text in [
            "p0.example.org:7101",
            "127.0.0.1:7100",
            "[::1]:7102",
            "dealer:1",
        ] {
            let a: ServiceAddr = text.parse().unwrap();
            assert_eq!(a.to_string(), text);
        }
        let v6: ServiceAddr = "[fe80::1]:9".parse().unwrap();
        assert_eq!((v6.host(), v6.port()), ("fe80::1", 9));
        assert!(v6.ip().is_some());
        assert!(
            "p0.example.org:1"
                .parse::<ServiceAddr>()
                .unwrap()
                .ip()
                .is_none()
        );
        let from: ServiceAddr = "10.0.0.2:7101".parse::<SocketAddr>().unwrap().into();
        assert_eq!(from.to_string(), "10.0.0.2:7101");
    }

    #[test]
    fn bad_addresses_are_named() {
        for (text, want) in [
            ("p0.example.org", "no port"),
            ("p0:0", "1..=65535"),
            ("p0:70000", "1..=65535"),
            (":7100", "host name"),
            ("bad_host:7100", "host name"),
            ("-p0:7100", "host name"),
            ("::1:7100", "brackets"),
            ("[::1:7100", "[IPv6]"),
            ("[nope]:7100", "IPv6"),
        ] {
            let e = text.parse::<ServiceAddr>().unwrap_err().to_string();
            assert!(e.contains(want) && e.contains(text), "{text}: {e}");
        }
        // As JSON too: a deployment file is untrusted input.
        let e = serde_json::from_str::<ServiceAddr>("\"p0\"").unwrap_err();
        assert!(e.to_string().contains("no port"), "{e}");
    }

    #[tokio::test]
    async fn localhost_resolves() {
        let a: ServiceAddr = "localhost:7100".parse().unwrap();
        let r = a.resolve().await.unwrap();
        assert!(r.ip().is_loopback() && r.port() == 7100, "{r}");
        let lit: ServiceAddr = "10.1.2.3:5".parse().unwrap();
        assert_eq!(lit.resolve().await.unwrap().to_string(), "10.1.2.3:5");
    }
}
