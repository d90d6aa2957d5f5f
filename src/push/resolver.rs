//! The DNS resolver of the push clients: it judges every address a target's host
//! resolves to (`domain::targets`) and hands the connector only those it judged, so
//! that no second lookup can rebind the name to an address that was not judged.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use crate::domain::targets::{self, Origin, Reserved};

/// A push refused because of where it would go; the sender records its text.
#[derive(Debug)]
pub struct RefusedTarget(pub String);

impl std::fmt::Display for RefusedTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RefusedTarget {}

/// Why a push to `host` at `ip` is refused, in the words the delivery log shows.
pub fn refusal(host: &str, ip: IpAddr, r: Reserved, origin: Origin) -> RefusedTarget {
    RefusedTarget(format!(
        "refused: {host} resolves to {ip}, {}{}",
        r.as_str(),
        match origin {
            Origin::Tenant => ", which a tenant's URLs may not reach",
            Origin::Provider => " (HEADCOUNT_WEBHOOK_DENY_PRIVATE is on)",
        }
    ))
}

#[derive(Debug, Clone, Copy)]
pub struct JudgingResolver {
    pub origin: Origin,
    pub deny_private: bool,
}

impl Resolve for JudgingResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let JudgingResolver {
            origin,
            deny_private,
        } = *self;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await
                .map_err(|_| RefusedTarget(format!("cannot resolve {host}")))?
                .collect();
            if found.is_empty() {
                return Err(RefusedTarget(format!("{host} has no address")).into());
            }
            // Every address must pass: the connector may try any of them.
            for a in &found {
                if let Err(r) = targets::judge(a.ip(), origin, deny_private) {
                    return Err(refusal(&host, a.ip(), r, origin).into());
                }
            }
            Ok(Box::new(found.into_iter()) as Addrs)
        })
    }
}

/// An HTTP client for pushes to URLs chosen by `origin`.
pub fn client(origin: Origin, deny_private: bool) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(15))
        .connect_timeout(std::time::Duration::from_secs(5))
        // A redirect could lead anywhere, past the judged address.
        .redirect(reqwest::redirect::Policy::none())
        // A proxy from the environment (HTTP_PROXY…) would resolve the host itself,
        // past the judging resolver: pushes always connect directly.
        .no_proxy()
        .user_agent(concat!("headcount/", env!("CARGO_PKG_VERSION")))
        .dns_resolver(Arc::new(JudgingResolver {
            origin,
            deny_private,
        }))
        .build()
}

/// The refusal inside a failed request's cause chain, if the resolver refused it.
pub fn refused_in(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(r) = err.downcast_ref::<RefusedTarget>() {
            return Some(r.0.clone());
        }
        cur = err.source();
    }
    None
}
