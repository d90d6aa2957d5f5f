//! Which addresses a push may go to. Tenants choose the URLs of their sites' webhooks
//! and of their alerts, and read every attempt's outcome: without this rule a tenant
//! could make headcount probe the provider's own network.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Who chose a URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A tenant (its site's `webhook_url` or its `notify_url`, set with a tenant token).
    Tenant,
    /// The provider (set with an admin token, or headcount's own configuration).
    Provider,
}

/// The kind of address a push would reach, where it is not a public one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reserved {
    Unspecified,
    Loopback,
    /// Link-local, the cloud metadata address 169.254.169.254 included.
    LinkLocal,
    /// RFC 1918, CGNAT (100.64.0.0/10) and IPv6 unique local (fc00::/7).
    Private,
    /// Multicast and broadcast: never a web server.
    Multicast,
}

impl Reserved {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unspecified => "an unspecified address",
            Self::Loopback => "a loopback address",
            Self::LinkLocal => "a link-local address",
            Self::Private => "a private address",
            Self::Multicast => "a multicast or broadcast address",
        }
    }
}

/// An IPv6 address that stands for an IPv4 one (mapped `::ffff:a.b.c.d`, the old
/// compatible `::a.b.c.d`, NAT64 `64:ff9b::a.b.c.d`) is judged as that IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return IpAddr::V4(v4);
            }
            let s = v6.segments();
            let embedded =
                Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
            if s[..6] == [0; 6]
                && !embedded.is_unspecified()
                && embedded != Ipv4Addr::new(0, 0, 0, 1)
            {
                return IpAddr::V4(embedded);
            }
            if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                return IpAddr::V4(embedded);
            }
            // IPv4-translated (RFC 2765), `::ffff:0:a.b.c.d`.
            if s[..6] == [0, 0, 0, 0, 0xffff, 0] {
                return IpAddr::V4(embedded);
            }
            IpAddr::V6(v6)
        }
        v4 => v4,
    }
}

/// What kind of reserved address `ip` is, if any.
pub fn classify(ip: IpAddr) -> Option<Reserved> {
    match canonical(ip) {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> Option<Reserved> {
    let o = ip.octets();
    if o[0] == 0 {
        Some(Reserved::Unspecified)
    } else if ip.is_loopback() {
        Some(Reserved::Loopback)
    } else if ip.is_link_local() {
        Some(Reserved::LinkLocal)
    } else if ip.is_private() || (o[0] == 100 && (o[1] & 0xc0) == 64) {
        Some(Reserved::Private)
    } else if ip.is_multicast() || ip.is_broadcast() || o[0] >= 240 {
        Some(Reserved::Multicast)
    } else {
        None
    }
}

fn classify_v6(ip: Ipv6Addr) -> Option<Reserved> {
    let first = ip.segments()[0];
    if ip.is_unspecified() {
        Some(Reserved::Unspecified)
    } else if ip.is_loopback() {
        Some(Reserved::Loopback)
    } else if (first & 0xffc0) == 0xfe80 {
        Some(Reserved::LinkLocal)
    } else if (first & 0xfe00) == 0xfc00 || (first & 0xffc0) == 0xfec0 {
        // Unique local, and the deprecated site-local fec0::/10.
        Some(Reserved::Private)
    } else if ip.is_multicast() {
        Some(Reserved::Multicast)
    } else {
        None
    }
}

/// Whether a push to `ip` may go ahead; the refusal says why.
///
/// Tenants' URLs never reach unspecified, loopback, link-local or multicast
/// addresses, whatever the setting; with `deny_private` no URL reaches any reserved
/// address, private ranges included. Without it the provider's own URLs may go
/// anywhere (providers often host sites on private networks).
pub fn judge(ip: IpAddr, origin: Origin, deny_private: bool) -> Result<(), Reserved> {
    match (classify(ip), origin) {
        (None, _) => Ok(()),
        (Some(r), _) if deny_private => Err(r),
        (Some(Reserved::Private), Origin::Tenant) => Ok(()),
        (Some(r), Origin::Tenant) => Err(r),
        (Some(_), Origin::Provider) => Ok(()),
    }
}

/// Names that resolve to this machine by convention (RFC 6761), refused without a
/// lookup wherever loopback is refused.
pub fn is_local_name(host: &str) -> bool {
    let h = host.trim_end_matches('.').to_ascii_lowercase();
    h == "localhost" || h.ends_with(".localhost")
}

/// A URL's host judged without a lookup: IP literals (every spelling the URL
/// standard accepts, such as `2130706433` or `[::ffff:7f00:1]`) and local names.
/// Other names pass here; their addresses are judged at send time.
pub fn judge_url_host(url: &str, origin: Origin, deny_private: bool) -> Result<(), Reserved> {
    let Ok(u) = url::Url::parse(url) else {
        return Ok(());
    };
    match u.host() {
        Some(url::Host::Ipv4(ip)) => judge(IpAddr::V4(ip), origin, deny_private),
        Some(url::Host::Ipv6(ip)) => judge(IpAddr::V6(ip), origin, deny_private),
        Some(url::Host::Domain(d)) if is_local_name(d) => {
            judge(IpAddr::V4(Ipv4Addr::LOCALHOST), origin, deny_private)
        }
        _ => Ok(()),
    }
}

/// A push URL as set through the API: a valid http(s) URL whose host is not already
/// known to be refused for whoever set it.
pub fn parse_push_url(s: &str, origin: Origin, deny_private: bool) -> Result<String, String> {
    let url = super::ids::parse_http_url(s)?;
    judge_url_host(&url, origin, deny_private).map_err(|r| {
        format!(
            "refused: its host is {}{}",
            r.as_str(),
            match origin {
                Origin::Tenant => ", which a tenant's URLs may not reach",
                Origin::Provider => " (HEADCOUNT_WEBHOOK_DENY_PRIVATE is on)",
            }
        )
    })?;
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn every_spelling_of_loopback_is_loopback() {
        for s in [
            "127.0.0.1",
            "127.255.0.9",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:7f00:1",
            "::127.0.0.1",
            "64:ff9b::7f00:1",
            "::ffff:0:7f00:1",
        ] {
            assert_eq!(classify(ip(s)), Some(Reserved::Loopback), "{s}");
        }
    }

    #[test]
    fn reserved_ranges_are_classified() {
        let cases = [
            ("0.0.0.0", Reserved::Unspecified),
            ("0.1.2.3", Reserved::Unspecified),
            ("::", Reserved::Unspecified),
            ("169.254.169.254", Reserved::LinkLocal),
            ("fe80::1", Reserved::LinkLocal),
            ("febf::1", Reserved::LinkLocal),
            ("10.1.2.3", Reserved::Private),
            ("172.16.0.1", Reserved::Private),
            ("192.168.1.1", Reserved::Private),
            ("100.64.0.1", Reserved::Private),
            ("100.127.255.254", Reserved::Private),
            ("fd00:ec2::254", Reserved::Private),
            ("fec0::1", Reserved::Private),
            ("::ffff:10.0.0.1", Reserved::Private),
            ("224.0.0.1", Reserved::Multicast),
            ("255.255.255.255", Reserved::Multicast),
            ("ff02::1", Reserved::Multicast),
        ];
        for (s, want) in cases {
            assert_eq!(classify(ip(s)), Some(want), "{s}");
        }
        for s in [
            "93.184.215.14",
            "100.128.0.1",
            "2606:4700::1111",
            "172.32.0.1",
        ] {
            assert_eq!(classify(ip(s)), None, "{s}");
        }
    }

    #[test]
    fn tenants_never_reach_loopback_or_link_local() {
        for deny in [false, true] {
            assert!(judge(ip("127.0.0.1"), Origin::Tenant, deny).is_err());
            assert!(judge(ip("::ffff:7f00:1"), Origin::Tenant, deny).is_err());
            assert!(judge(ip("169.254.169.254"), Origin::Tenant, deny).is_err());
            assert!(judge(ip("fe80::1"), Origin::Tenant, deny).is_err());
            assert!(judge(ip("0.0.0.0"), Origin::Tenant, deny).is_err());
            assert!(judge(ip("93.184.215.14"), Origin::Tenant, deny).is_ok());
        }
        // Private ranges only with the setting.
        assert!(judge(ip("10.0.0.5"), Origin::Tenant, false).is_ok());
        assert!(judge(ip("10.0.0.5"), Origin::Tenant, true).is_err());
    }

    #[test]
    fn the_providers_urls_are_refused_only_with_the_setting() {
        assert!(judge(ip("127.0.0.1"), Origin::Provider, false).is_ok());
        assert!(judge(ip("10.0.0.5"), Origin::Provider, false).is_ok());
        for s in [
            "127.0.0.1",
            "10.0.0.5",
            "100.64.1.1",
            "fd12::1",
            "fe80::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(judge(ip(s), Origin::Provider, true).is_err(), "{s}");
        }
    }

    #[test]
    fn url_hosts_are_judged_in_every_spelling() {
        for u in [
            "http://127.0.0.1:8080/",
            "http://[::ffff:127.0.0.1]:8080/",
            "http://[::ffff:7f00:1]/",
            "http://2130706433/",
            "http://0x7f.1/",
            "http://017700000001/",
            "http://localhost/",
            "http://LOCALHOST./",
            "http://a.localhost/",
            "http://[fe80::1]/",
            "http://169.254.169.254/latest/meta-data",
        ] {
            assert!(judge_url_host(u, Origin::Tenant, false).is_err(), "{u}");
        }
        assert!(judge_url_host("https://hooks.example/x", Origin::Tenant, true).is_ok());
        assert!(judge_url_host("http://127.0.0.1/", Origin::Provider, false).is_ok());
    }
}
