//! Completion callbacks: URL validation against server-side request forgery, and HMAC signing.
//!
//! A callback URL is checked when a batch is created and again at delivery, after DNS
//! resolution (a name may resolve differently later): https only (plain http only to loopback
//! when `allow_loopback_http`, i.e. local mode); no userinfo; every resolved address public —
//! no private, loopback, link-local (incl. the 169.254.169.254 metadata service), CGNAT,
//! unspecified, multicast or documentation ranges. Delivery then connects to the checked
//! addresses only, with a short timeout and no redirects.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use hmac::{Hmac, Mac};
use sha2::Sha256;
use url::{Host, Url};

/// Header carrying the signature: `t=<unix seconds>,v1=<hex HMAC-SHA256 of "{t}.{body}">`.
pub const SIGNATURE_HEADER: &str = "x-prism-signature";

/// Why a callback URL is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallbackUrlError {
    /// Not a URL.
    #[error("not a valid URL")]
    Invalid,
    /// Not https (or http to loopback in local mode).
    #[error("the scheme must be https")]
    Scheme,
    /// Credentials in the URL.
    #[error("credentials in the URL are not allowed")]
    UserInfo,
    /// The host resolves to (or is) an address that must not be reached.
    #[error("the host resolves to a non-public address {0}")]
    Forbidden(IpAddr),
    /// The host does not resolve.
    #[error("the host does not resolve: {0}")]
    Unresolvable(String),
}

/// Whether `ip` is a public unicast address.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public_v4(v4);
            }
            let s = v6.segments();
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local
                || (s[0] & 0xffc0) == 0xfe80 // link local
                || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
                || (s[0] == 0x0064 && s[1] == 0xff9b)) // NAT64 can reach private v4
        }
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let o = ip.octets();
    !(ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || o[0] == 0
        || (o[0] == 100 && (o[1] & 0xc0) == 64) // CGNAT 100.64/10
        || (o[0] == 192 && o[1] == 0 && o[2] == 0) // IETF protocol assignments
        || (o[0] == 198 && (o[1] & 0xfe) == 18) // benchmarking 198.18/15
        || o[0] >= 240)
}

/// Whether a callback may connect to `ip`: public, or loopback in local mode.
fn reachable(ip: IpAddr, allow_loopback_http: bool) -> bool {
    is_public(ip) || (allow_loopback_http && ip.is_loopback())
}

/// Check a URL's shape (before resolution).
///
/// # Errors
/// The first rule it breaks.
pub fn check_shape(raw: &str, allow_loopback_http: bool) -> Result<Url, CallbackUrlError> {
    let url = Url::parse(raw).map_err(|_| CallbackUrlError::Invalid)?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(CallbackUrlError::UserInfo);
    }
    let host = url.host().ok_or(CallbackUrlError::Invalid)?;
    let literal = match host {
        Host::Ipv4(v4) => Some(IpAddr::V4(v4)),
        Host::Ipv6(v6) => Some(IpAddr::V6(v6)),
        Host::Domain(_) => None,
    };
    let loopback = match (&host, literal) {
        (_, Some(ip)) => ip.is_loopback(),
        (Host::Domain(d), None) => d.eq_ignore_ascii_case("localhost"),
        _ => false,
    };
    match url.scheme() {
        "https" => {}
        "http" if allow_loopback_http && loopback => {}
        _ => return Err(CallbackUrlError::Scheme),
    }
    if let Some(ip) = literal
        && !reachable(ip, allow_loopback_http)
    {
        return Err(CallbackUrlError::Forbidden(ip));
    }
    Ok(url)
}

/// Check the shape, resolve the host, and check every address; returns the addresses to
/// connect to (pin them: never resolve again for the request).
///
/// # Errors
/// The first rule the URL or one of its addresses breaks.
pub async fn resolve_checked(
    raw: &str,
    allow_loopback_http: bool,
) -> Result<(Url, Vec<SocketAddr>), CallbackUrlError> {
    let url = check_shape(raw, allow_loopback_http)?;
    let host = url
        .host_str()
        .ok_or(CallbackUrlError::Invalid)?
        .trim_matches(['[', ']'])
        .to_owned();
    let port = url
        .port_or_known_default()
        .ok_or(CallbackUrlError::Invalid)?;
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
        .await
        .map_err(|e| CallbackUrlError::Unresolvable(e.to_string()))?
        .collect();
    if addrs.is_empty() {
        return Err(CallbackUrlError::Unresolvable(host));
    }
    for a in &addrs {
        let ip = a.ip();
        if !reachable(ip, allow_loopback_http) {
            return Err(CallbackUrlError::Forbidden(ip));
        }
    }
    Ok((url, addrs))
}

/// The signature header value for `body` at `timestamp`.
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any size");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!(
        "t={timestamp},v1={}",
        hex::encode(mac.finalize().into_bytes())
    )
}

/// Verify a signature header (what a receiver does).
pub fn verify(secret: &[u8], header: &str, body: &[u8]) -> bool {
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", v)) => t = v.parse::<i64>().ok(),
            Some(("v1", v)) => v1 = hex::decode(v).ok(),
            _ => {}
        }
    }
    let (Some(t), Some(sig)) = (t, v1) else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any size");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.verify_slice(&sig).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_are_checked() {
        assert!(check_shape("https://hooks.example.com/x", false).is_ok());
        assert_eq!(
            check_shape("http://hooks.example.com/x", false),
            Err(CallbackUrlError::Scheme)
        );
        assert_eq!(
            check_shape("http://127.0.0.1:9/x", false),
            Err(CallbackUrlError::Scheme)
        );
        assert!(check_shape("http://127.0.0.1:9/x", true).is_ok());
        assert!(check_shape("http://localhost:9/x", true).is_ok());
        assert_eq!(
            check_shape("http://10.0.0.1/x", true),
            Err(CallbackUrlError::Scheme)
        );
        assert_eq!(
            check_shape("https://user:pw@example.com/", false),
            Err(CallbackUrlError::UserInfo)
        );
        assert_eq!(
            check_shape("ftp://example.com/", false),
            Err(CallbackUrlError::Scheme)
        );
        assert_eq!(
            check_shape("not a url", false),
            Err(CallbackUrlError::Invalid)
        );
        for bad in [
            "https://169.254.169.254/latest",
            "https://10.1.2.3/",
            "https://192.168.1.1/",
            "https://[::1]/",
            "https://[fd00::1]/",
            "https://[::ffff:10.0.0.1]/",
            "https://100.64.0.1/",
            "https://0.0.0.0/",
        ] {
            assert!(
                matches!(check_shape(bad, false), Err(CallbackUrlError::Forbidden(_))),
                "{bad}"
            );
        }
    }

    #[tokio::test]
    async fn resolution_is_checked() {
        assert!(matches!(
            resolve_checked("https://localhost:9/x", false).await,
            Err(CallbackUrlError::Forbidden(_))
        ));
        let (_, addrs) = resolve_checked("http://localhost:9/x", true).await.unwrap();
        assert!(addrs.iter().all(|a| a.ip().is_loopback()));
        assert!(matches!(
            resolve_checked("https://no-such-host.invalid/", false).await,
            Err(CallbackUrlError::Unresolvable(_))
        ));
    }

    #[test]
    fn signatures_verify() {
        let s = sign(b"k", 1_700_000_000, b"{\"a\":1}");
        assert!(s.starts_with("t=1700000000,v1="));
        assert!(verify(b"k", &s, b"{\"a\":1}"));
        assert!(!verify(b"k", &s, b"{\"a\":2}"));
        assert!(!verify(b"other", &s, b"{\"a\":1}"));
        assert!(!verify(b"k", "garbage", b"{}"));
    }
}
