//! Where the OAuth client may send requests on behalf of one MCP server.
//!
//! Discovery follows URLs that servers hand out: the `resource_metadata`
//! of a 401, the `authorization_servers` of that document, the endpoints
//! in the authorization server's metadata. A hostile MCP server can point
//! any of them at an address only the agent can reach — the cloud metadata
//! service at 169.254.169.254, an admin port on loopback, a database on the
//! private network — and have amesh fetch it (server-side request forgery).
//!
//! So every address the OAuth client connects to is classified
//! ([`AddressClass`]) and one more internal than the MCP server's own is
//! refused: a public MCP server cannot send amesh to a private or loopback
//! address, a private one (compose, a corporate network) cannot send it to
//! loopback, and a loopback one (development, tests) may use loopback but
//! not link-local. Hosts the operator lists in the tool's
//! `auth.allowed_internal_hosts` are exempt: an identity provider on the
//! corporate network behind a public MCP gateway.
//!
//! The check runs where the address is certain: in the OAuth client's DNS
//! resolver ([`super::http`]), on the addresses the connection will use, so
//! a name that resolves to a public address when checked and to an
//! internal one when connecting (DNS rebinding) cannot slip through; and
//! on IP-literal URLs, which reqwest connects to without resolving.
//!
//! The MCP server's class comes from its configured host, resolved once
//! with the system resolver; its operator chose that host, so its DNS is
//! trusted as far as the first answer.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

use tokio::sync::OnceCell;
use url::{Host, Url};

/// How far inside the network an address is, from the open internet
/// (least internal) to addresses that are never a valid destination.
/// The order is the policy: a target may be at most as internal as the MCP
/// server ([`permits`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AddressClass {
    /// Globally routable (and anything not listed below).
    Public,
    /// RFC 1918 (10/8, 172.16/12, 192.168/16), CGNAT 100.64/10, the IETF
    /// and benchmarking blocks 192.0.0/24 and 198.18/15, IPv6 unique local
    /// fc00::/7 and the old site-local fec0::/10.
    Private,
    /// This machine: 127/8, ::1.
    Loopback,
    /// 169.254/16 (which holds the cloud metadata service 169.254.169.254)
    /// and fe80::/10.
    LinkLocal,
    /// Unspecified (0.0.0.0/8, ::), multicast, broadcast and the reserved
    /// 240/4: never a server amesh should talk to (0.0.0.0 reaches this
    /// machine on Linux).
    Unroutable,
}

impl fmt::Display for AddressClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Public => "public",
            Self::Private => "private",
            Self::Loopback => "loopback",
            Self::LinkLocal => "link-local",
            Self::Unroutable => "unroutable",
        })
    }
}

/// The class of `ip`. IPv4-mapped (::ffff:a.b.c.d) and NAT64
/// (64:ff9b::/96) IPv6 addresses are classified by the IPv4 address they
/// carry, since that is where the packets end up.
pub fn classify(ip: IpAddr) -> AddressClass {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> AddressClass {
    let [a, b, c, _] = ip.octets();
    match (a, b, c) {
        (0, ..) | (224..=255, ..) => AddressClass::Unroutable,
        (127, ..) => AddressClass::Loopback,
        (169, 254, _) => AddressClass::LinkLocal,
        (10, ..) | (192, 168, _) | (192, 0, 0) => AddressClass::Private,
        (172, 16..=31, _) | (100, 64..=127, _) | (198, 18..=19, _) => AddressClass::Private,
        _ => AddressClass::Public,
    }
}

fn classify_v6(ip: Ipv6Addr) -> AddressClass {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return classify_v4(v4);
    }
    let segments = ip.segments();
    if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        let [.., a, b, c, d] = ip.octets();
        return classify_v4(Ipv4Addr::new(a, b, c, d));
    }
    if ip.is_unspecified() || ip.is_multicast() {
        AddressClass::Unroutable
    } else if ip.is_loopback() {
        AddressClass::Loopback
    } else if segments[0] & 0xffc0 == 0xfe80 {
        AddressClass::LinkLocal
    } else if segments[0] & 0xfe00 == 0xfc00 || segments[0] & 0xffc0 == 0xfec0 {
        AddressClass::Private
    } else {
        AddressClass::Public
    }
}

/// The policy itself: a target may be as internal as the MCP server, no
/// more.
pub fn permits(mcp_server: AddressClass, target: AddressClass) -> bool {
    target <= mcp_server
}

/// A host the operator lets OAuth requests reach whatever its address
/// (`auth.allowed_internal_hosts`): a DNS name, matched without regard to
/// case or a trailing dot, or an IP address (IPv6 with or without
/// brackets). No ports, paths, schemes or wildcards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedHost(Host<String>);

impl FromStr for AllowedHost {
    type Err = String;

    fn from_str(entry: &str) -> Result<Self, String> {
        let entry = entry.trim();
        if entry.is_empty() {
            return Err("empty host".into());
        }
        if entry.contains('*') {
            return Err("wildcards are not supported; list each host".into());
        }
        let bare_v6 = entry
            .strip_prefix('[')
            .and_then(|e| e.strip_suffix(']'))
            .unwrap_or(entry);
        if let Ok(v6) = bare_v6.parse::<Ipv6Addr>() {
            return Ok(Self(Host::Ipv6(v6)));
        }
        if entry.contains("://") || entry.contains(['/', ':', '@', '?', '#']) {
            return Err(
                "expected a bare host name or IP address, without scheme, port or path".into(),
            );
        }
        let host = Host::parse(entry.trim_end_matches('.')).map_err(|e| e.to_string())?;
        Ok(Self(host))
    }
}

impl AllowedHost {
    fn matches(&self, host: &Host<String>) -> bool {
        match (&self.0, host) {
            (Host::Domain(allowed), Host::Domain(name)) => {
                allowed.eq_ignore_ascii_case(name.trim_end_matches('.'))
            }
            (allowed, host) => allowed == host,
        }
    }
}

/// A refused request target, with what was found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{host} is at {address}, a {class} address, more internal than the MCP server ({mcp_server}); \
     list the host in the tool's auth.allowed_internal_hosts if amesh may reach it"
)]
pub struct TargetRefused {
    /// The host of the URL.
    pub host: String,
    /// The address it resolved to (or is).
    pub address: IpAddr,
    /// That address's class.
    pub class: AddressClass,
    /// The MCP server's class.
    pub mcp_server: AddressClass,
}

/// The policy of one MCP server's OAuth client: its class (resolved on
/// first use) and the operator's exemptions. Shared by the client's
/// resolver and its fetches.
#[derive(Debug)]
pub(crate) struct TargetPolicy {
    mcp_host: Host<String>,
    mcp_port: u16,
    mcp_class: OnceCell<AddressClass>,
    allowed: Vec<AllowedHost>,
}

impl TargetPolicy {
    /// The policy for the MCP server at `mcp_url`; `None` when the URL has
    /// no host.
    pub(crate) fn new(mcp_url: &Url, allowed: Vec<AllowedHost>) -> Option<Self> {
        Some(Self {
            mcp_host: mcp_url.host()?.to_owned(),
            mcp_port: mcp_url.port_or_known_default().unwrap_or(443),
            mcp_class: OnceCell::new(),
            allowed,
        })
    }

    /// Checks a URL whose host is an IP address (reqwest resolves nothing
    /// for those); names are checked by the resolver when connecting.
    pub(crate) async fn check_literal(&self, url: &Url) -> Result<(), TargetRefused> {
        let (host, address): (Host<String>, IpAddr) = match url.host() {
            Some(Host::Ipv4(v4)) => (Host::Ipv4(v4), v4.into()),
            Some(Host::Ipv6(v6)) => (Host::Ipv6(v6), v6.into()),
            _ => return Ok(()),
        };
        self.check(&host, &[address]).await
    }

    /// Checks every address `host` resolved to: one refused address
    /// refuses the host (a name that mixes public and internal answers is
    /// the shape of a rebinding attack).
    pub(crate) async fn check(
        &self,
        host: &Host<String>,
        addresses: &[IpAddr],
    ) -> Result<(), TargetRefused> {
        if self.allowed.iter().any(|allowed| allowed.matches(host)) {
            return Ok(());
        }
        let mcp_server = self.mcp_class().await;
        for &address in addresses {
            let class = classify(address);
            if !permits(mcp_server, class) {
                return Err(TargetRefused {
                    host: host.to_string(),
                    address,
                    class,
                    mcp_server,
                });
            }
        }
        Ok(())
    }

    /// The MCP server's class: that of its IP literal, else the least
    /// internal of the addresses its name resolves to. A name that does not
    /// resolve counts as public (the strictest reach) and is asked again
    /// next time.
    async fn mcp_class(&self) -> AddressClass {
        let resolved = self
            .mcp_class
            .get_or_try_init(|| async {
                match &self.mcp_host {
                    Host::Ipv4(v4) => Ok(classify(IpAddr::V4(*v4))),
                    Host::Ipv6(v6) => Ok(classify(IpAddr::V6(*v6))),
                    Host::Domain(name) => {
                        let addresses = resolve(name, self.mcp_port).await?;
                        addresses
                            .iter()
                            .map(|a| classify(a.ip()))
                            .min()
                            .ok_or_else(|| std::io::Error::other("no address"))
                    }
                }
            })
            .await;
        match resolved {
            Ok(class) => *class,
            Err(e) => {
                tracing::warn!(host = %self.mcp_host, error = %e, "cannot resolve the MCP server's host; treating it as public for OAuth requests");
                AddressClass::Public
            }
        }
    }
}

/// Resolves `name` with the system resolver (getaddrinfo), as reqwest's
/// default resolver does.
pub(crate) async fn resolve(name: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
    Ok(tokio::net::lookup_host((name, port)).await?.collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use AddressClass::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn addresses_are_classified_by_range() {
        for (address, class) in [
            ("8.8.8.8", Public),
            ("203.0.113.10", Public),
            ("172.32.0.1", Public),
            ("100.128.0.1", Public),
            ("2606:4700::1111", Public),
            ("10.1.2.3", Private),
            ("172.16.0.1", Private),
            ("172.31.255.255", Private),
            ("192.168.1.1", Private),
            ("100.64.0.1", Private),
            ("100.127.255.255", Private),
            ("198.18.0.1", Private),
            ("192.0.0.8", Private),
            ("fd12:3456::1", Private),
            ("fc00::1", Private),
            ("fec0::1", Private),
            ("127.0.0.1", Loopback),
            ("127.200.0.1", Loopback),
            ("::1", Loopback),
            ("169.254.169.254", LinkLocal),
            ("169.254.0.1", LinkLocal),
            ("fe80::1", LinkLocal),
            ("febf::1", LinkLocal),
            ("0.0.0.0", Unroutable),
            ("0.1.2.3", Unroutable),
            ("::", Unroutable),
            ("224.0.0.1", Unroutable),
            ("239.255.255.250", Unroutable),
            ("255.255.255.255", Unroutable),
            ("240.0.0.1", Unroutable),
            ("ff02::1", Unroutable),
        ] {
            assert_eq!(classify(ip(address)), class, "{address}");
        }
    }

    #[test]
    fn embedded_ipv4_is_classified_by_the_ipv4_address() {
        assert_eq!(classify(ip("::ffff:127.0.0.1")), Loopback);
        assert_eq!(classify(ip("::ffff:169.254.169.254")), LinkLocal);
        assert_eq!(classify(ip("::ffff:10.0.0.1")), Private);
        assert_eq!(classify(ip("::ffff:8.8.8.8")), Public);
        assert_eq!(classify(ip("64:ff9b::a9fe:a9fe")), LinkLocal);
        assert_eq!(classify(ip("64:ff9b::808:808")), Public);
    }

    #[test]
    fn a_target_may_be_as_internal_as_the_mcp_server_and_no_more() {
        let all = [Public, Private, Loopback, LinkLocal, Unroutable];
        let allowed = |server| {
            all.into_iter()
                .filter(|&target| permits(server, target))
                .collect::<Vec<_>>()
        };
        assert_eq!(allowed(Public), [Public]);
        assert_eq!(allowed(Private), [Public, Private]);
        assert_eq!(allowed(Loopback), [Public, Private, Loopback]);
        assert!(
            !permits(Loopback, LinkLocal),
            "dev setups never reach the metadata service"
        );
    }

    fn policy(mcp: &str, allowed: &[&str]) -> TargetPolicy {
        let allowed = allowed.iter().map(|a| a.parse().unwrap()).collect();
        TargetPolicy::new(&Url::parse(mcp).unwrap(), allowed).unwrap()
    }

    fn host(s: &str) -> Host<String> {
        Host::parse(s).unwrap()
    }

    #[tokio::test]
    async fn public_mcp_server_cannot_reach_internal_addresses() {
        let public = policy("https://203.0.113.10/mcp", &[]);
        assert!(
            public
                .check(&host("auth.example"), &[ip("198.51.100.7")])
                .await
                .is_ok()
        );
        for (address, class) in [
            ("10.0.0.5", Private),
            ("127.0.0.1", Loopback),
            ("169.254.169.254", LinkLocal),
            ("::ffff:127.0.0.1", Loopback),
            ("0.0.0.0", Unroutable),
        ] {
            let refused = public
                .check(&host("auth.example"), &[ip(address)])
                .await
                .unwrap_err();
            assert_eq!(refused.class, class, "{address}");
            assert_eq!(refused.mcp_server, Public);
            assert!(
                refused.to_string().contains("allowed_internal_hosts"),
                "{refused}"
            );
        }
        // One internal answer among public ones refuses the name.
        let mixed = [ip("198.51.100.7"), ip("127.0.0.1")];
        assert!(public.check(&host("auth.example"), &mixed).await.is_err());
    }

    #[tokio::test]
    async fn loopback_and_private_mcp_servers_reach_their_own_class() {
        let dev = policy("http://127.0.0.1:9100/mcp", &[]);
        assert!(
            dev.check(&host("localhost"), &[ip("127.0.0.1")])
                .await
                .is_ok()
        );
        assert!(dev.check(&host("idp"), &[ip("10.0.0.5")]).await.is_ok());
        let metadata = dev
            .check(&host("169.254.169.254"), &[ip("169.254.169.254")])
            .await;
        assert_eq!(metadata.unwrap_err().class, LinkLocal);
        let compose = policy("http://172.18.0.4:8090/mcp", &[]);
        assert!(
            compose
                .check(&host("idp"), &[ip("172.18.0.5")])
                .await
                .is_ok()
        );
        assert!(compose.check(&host("x"), &[ip("127.0.0.1")]).await.is_err());
    }

    #[tokio::test]
    async fn allow_listed_hosts_are_exempt_by_name_or_address() {
        let public = policy(
            "https://203.0.113.10/mcp",
            &["IdP.Corp.Local.", "10.9.8.7", "fd00::5", "[fd00::6]"],
        );
        assert!(
            public
                .check(&host("idp.corp.local"), &[ip("10.0.0.5")])
                .await
                .is_ok()
        );
        assert!(
            public
                .check(&host("idp.corp.local."), &[ip("10.0.0.5")])
                .await
                .is_ok()
        );
        assert!(
            public
                .check(&host("10.9.8.7"), &[ip("10.9.8.7")])
                .await
                .is_ok()
        );
        assert!(
            public
                .check(&host("[fd00::5]"), &[ip("fd00::5")])
                .await
                .is_ok()
        );
        assert!(
            public
                .check(&host("[fd00::6]"), &[ip("fd00::6")])
                .await
                .is_ok()
        );
        // Not a suffix match, and another host at an allowed address is not allowed.
        assert!(
            public
                .check(&host("evil.idp.corp.local"), &[ip("10.0.0.5")])
                .await
                .is_err()
        );
        assert!(
            public
                .check(&host("other"), &[ip("10.9.8.7")])
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn literal_urls_are_checked_and_names_left_to_the_resolver() {
        let public = policy("https://203.0.113.10/mcp", &[]);
        let url = |s: &str| Url::parse(s).unwrap();
        let refused = public
            .check_literal(&url("http://169.254.169.254/latest/meta-data/"))
            .await
            .unwrap_err();
        assert_eq!(refused.class, LinkLocal);
        assert!(
            public
                .check_literal(&url("http://[::1]:8080/x"))
                .await
                .is_err()
        );
        assert!(
            public
                .check_literal(&url("https://198.51.100.7/token"))
                .await
                .is_ok()
        );
        assert!(
            public
                .check_literal(&url("https://localhost/token"))
                .await
                .is_ok()
        );
    }

    #[test]
    fn allowed_hosts_are_bare_hosts() {
        for ok in [
            "idp.corp.local",
            "IDP.example.",
            "10.0.0.5",
            "fd00::1",
            "[fd00::1]",
            "localhost",
        ] {
            assert!(ok.parse::<AllowedHost>().is_ok(), "{ok}");
        }
        for (bad, why) in [
            ("", "empty"),
            ("  ", "empty"),
            ("*.corp.local", "wildcards"),
            ("https://idp.corp.local", "without scheme"),
            ("idp.corp.local:8443", "without scheme, port"),
            ("idp.corp.local/oauth", "path"),
            ("user@idp", "bare host"),
            ("exa mple", ""),
        ] {
            let err = bad.parse::<AllowedHost>().unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }
}
