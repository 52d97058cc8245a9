//! Completion callbacks: URL validation against server-side request forgery, and signing per
//! the Standard Webhooks specification (`webhook-id`, `webhook-timestamp`, `webhook-signature`
//! headers; secrets in `whsec_<base64>` form), so receivers can verify with its libraries.
//!
//! A callback URL is checked when a batch is created and again at delivery, after DNS
//! resolution (a name may resolve differently later): https only (plain http only to loopback
//! when `allow_loopback_http`, i.e. local mode); no userinfo; an IPv4 literal only in its
//! dotted-decimal spelling (`0x7f000001`, `2130706433` or `0177.0.0.1` are refused); every
//! address public — no private, loopback, link-local (incl. the 169.254.169.254 metadata
//! service), CGNAT, unspecified, multicast or documentation ranges, and no IPv6 address that
//! carries or tunnels to an IPv4 one that is not (IPv4-mapped, IPv4-compatible, 6to4, NAT64;
//! Teredo and site-local always). Errors never name the address a host resolved to. Delivery
//! then connects to the checked addresses only, with a short timeout and no redirects.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use hmac::{Hmac, Mac};
use sha2::Sha256;
use url::{Host, Url};

/// The delivery's id (the same on every retry of one delivery): receivers deduplicate on it.
pub const WEBHOOK_ID_HEADER: &str = "webhook-id";
/// When the delivery was signed, in Unix seconds.
pub const WEBHOOK_TIMESTAMP_HEADER: &str = "webhook-timestamp";
/// The signature(s): `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">` (see [`sign`]).
pub const WEBHOOK_SIGNATURE_HEADER: &str = "webhook-signature";
/// The prefix of a secret in the Standard Webhooks serialisation.
pub const WHSEC_PREFIX: &str = "whsec_";

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
    /// The host resolves to (or is) an address that must not be reached. The address is kept
    /// for logs; the message never shows it (a resolved private address is itself a leak).
    #[error("the host is, or resolves to, an address that is not public")]
    Forbidden(IpAddr),
    /// An IPv4 literal in a spelling other than dotted decimal (hex, octal, a single number).
    #[error("an IPv4 address must be written in dotted-decimal form")]
    ObfuscatedAddress,
    /// The host does not resolve.
    #[error("the host does not resolve: {0}")]
    Unresolvable(String),
}

/// Whether `ip` is a public unicast address.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => {
            let s = v6.segments();
            let v4 = |hi: u16, lo: u16| {
                let [a, b] = hi.to_be_bytes();
                let [c, d] = lo.to_be_bytes();
                Ipv4Addr::new(a, b, c, d)
            };
            // Addresses that carry an IPv4 address, which is what gets reached.
            if let Some(inner) = v6.to_ipv4_mapped() {
                return is_public_v4(inner); // ::ffff:a.b.c.d
            }
            if s[..6] == [0; 6] && !v6.is_loopback() && !v6.is_unspecified() {
                return is_public_v4(v4(s[6], s[7])); // ::a.b.c.d, IPv4-compatible
            }
            if s[0] == 0x2002 {
                return is_public_v4(v4(s[1], s[2])); // 6to4
            }
            if s[0] == 0x0064 && s[1] == 0xff9b {
                return false; // NAT64 (64:ff9b::/96 and the local-use 64:ff9b:1::/48)
            }
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local
                || (s[0] & 0xffc0) == 0xfe80 // link local
                || (s[0] & 0xffc0) == 0xfec0 // site local (deprecated, still routed inside sites)
                || (s[0] == 0x2001 && s[1] == 0) // Teredo: tunnels to an IPv4 relay and client
                || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
                || (s[0] == 0x0100 && s[1..4] == [0, 0, 0])) // discard-only 100::/64
        }
    }
}

/// Whether `host`, as written in the URL, spells an IPv4 address other than in canonical
/// dotted decimal (the URL standard reads `0x7f000001`, `2130706433` and `0177.0.0.1` as
/// 127.0.0.1; a callback URL has no business hiding its address that way).
fn obfuscated_v4(raw_host: &str, parsed: Ipv4Addr) -> bool {
    !raw_host.eq_ignore_ascii_case(&parsed.to_string())
}

/// The host as written in `raw` (between `//`, userinfo and the port or path), lowercased.
fn raw_host(raw: &str) -> Option<String> {
    let rest = raw.split_once("//")?.1;
    let authority = rest.split(['/', '?', '#', '\\']).next()?;
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if host_port.starts_with('[') {
        host_port.split_inclusive(']').next()?
    } else {
        host_port.split(':').next()?
    };
    Some(host.trim_end_matches('.').to_ascii_lowercase())
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
        Host::Ipv4(v4) => {
            if raw_host(raw).is_none_or(|h| obfuscated_v4(&h, v4)) {
                return Err(CallbackUrlError::ObfuscatedAddress);
            }
            Some(IpAddr::V4(v4))
        }
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

/// Sign one delivery as the Standard Webhooks specification says: HMAC-SHA256 with `key` over
/// `"{msg_id}.{timestamp}.{body}"`, base64, as `v1,<signature>` (the `webhook-signature`
/// header's value; `msg_id` goes in `webhook-id`, `timestamp`, in Unix seconds, in
/// `webhook-timestamp`).
pub fn sign(key: &[u8], msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    use base64::Engine as _;
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD
            .encode(mac(key, msg_id, timestamp, body).finalize().into_bytes())
    )
}

/// Verify a `webhook-signature` header (one or more space-separated `v1,<base64>` entries; one
/// match is enough), as a receiver does. The timestamp's freshness is the receiver's to check.
pub fn verify(key: &[u8], msg_id: &str, timestamp: i64, header: &str, body: &[u8]) -> bool {
    use base64::Engine as _;
    header
        .split(' ')
        .filter_map(|entry| entry.strip_prefix("v1,"))
        .filter_map(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        // Constant time: the MAC's own comparison.
        .any(|sig| mac(key, msg_id, timestamp, body).verify_slice(&sig).is_ok())
}

/// HMAC-SHA256 with `key` over `"{msg_id}.{timestamp}.{body}"`.
fn mac(key: &[u8], msg_id: &str, timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
    let mut m = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any size");
    m.update(format!("{msg_id}.{timestamp}.").as_bytes());
    m.update(body);
    m
}

/// The HMAC key of a configured webhook secret: for `whsec_<base64>` (the Standard Webhooks
/// form, what receivers' libraries take) the decoded bytes; for any other string its bytes (a
/// receiver then configures `whsec_` + the base64 of that string, see [`whsec`]).
pub fn webhook_key(secret: &str) -> Vec<u8> {
    use base64::Engine as _;
    secret
        .strip_prefix(WHSEC_PREFIX)
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .filter(|k| !k.is_empty())
        .unwrap_or_else(|| secret.as_bytes().to_vec())
}

/// The webhook key of `principal` derived from a master key: HMAC-SHA256(master, a fixed label
/// and the principal). Each tenant gets its own key without a key store; an operator recovers
/// a tenant's with `prism webhooks secret --principal NAME`, and a key configured for the
/// principal replaces it.
pub fn principal_key(master: &[u8], principal: &str) -> Vec<u8> {
    let mut m = Hmac::<Sha256>::new_from_slice(master).expect("HMAC takes keys of any size");
    m.update(b"prism webhook key v1\0");
    m.update(principal.as_bytes());
    m.finalize().into_bytes().to_vec()
}

/// The `whsec_<base64>` form of a key, as receivers configure it.
pub fn whsec(key: &[u8]) -> String {
    use base64::Engine as _;
    format!(
        "{WHSEC_PREFIX}{}",
        base64::engine::general_purpose::STANDARD.encode(key)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn principals_get_distinct_stable_keys() {
        let master = b"master key";
        let a = principal_key(master, "alice");
        assert_eq!(a.len(), 32);
        assert_eq!(a, principal_key(master, "alice"));
        assert_ne!(a, principal_key(master, "bob"));
        assert_ne!(a, principal_key(b"another master", "alice"));
    }

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
            "https://[::7f00:1]/",          // IPv4-compatible 127.0.0.1
            "https://[::a00:1]/",           // IPv4-compatible 10.0.0.1
            "https://[2002:7f00:1::]/",     // 6to4 of 127.0.0.1
            "https://[2002:a9fe:a9fe::1]/", // 6to4 of 169.254.169.254
            "https://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/", // Teredo
            "https://[fec0::1]/",           // site local
            "https://[64:ff9b::a00:1]/",    // NAT64 of 10.0.0.1
            "https://[64:ff9b:1::1]/",      // local-use NAT64
            "https://[100::1]/",            // discard-only
        ] {
            assert!(
                matches!(check_shape(bad, false), Err(CallbackUrlError::Forbidden(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn numeric_ipv4_spellings_are_refused() {
        for bad in [
            "http://0x7f000001/",
            "https://0x7f000001/",
            "https://2130706433/",
            "https://0177.0.0.1/",
            "https://0x7f.0.0.1/",
            "https://127.1/",
            "https://user@0x7f000001:8443/x",
        ] {
            assert!(
                matches!(
                    check_shape(bad, true),
                    Err(CallbackUrlError::ObfuscatedAddress | CallbackUrlError::UserInfo)
                ),
                "{bad}: {:?}",
                check_shape(bad, true)
            );
        }
        assert_eq!(
            check_shape("http://0x7f000001/", true),
            Err(CallbackUrlError::ObfuscatedAddress)
        );
        // Dotted decimal stays fine, public v6 and 6to4 of a public address too.
        assert!(check_shape("https://93.184.215.14/", false).is_ok());
        assert!(check_shape("https://93.184.215.14.:8443/", false).is_ok());
        assert!(check_shape("http://127.0.0.1:9/x", true).is_ok());
        assert!(check_shape("https://[2606:4700::1111]/", false).is_ok());
        assert!(check_shape("https://[2002:5db8:d70e::1]/", false).is_ok());
    }

    #[test]
    fn errors_never_show_the_address() {
        let err = check_shape("https://[::ffff:10.0.0.1]/", false).unwrap_err();
        assert!(!err.to_string().contains("10.0.0.1"), "{err}");
        assert!(!err.to_string().contains("ffff"), "{err}");
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
    fn signatures_follow_the_standard_webhooks_test_vector() {
        // The specification's reference libraries' vector.
        let key = webhook_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        let body = br#"{"test": 2432232314}"#;
        let sig = sign(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1_614_265_330, body);
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        let id = "msg_p5jXN8AQM9LWM0D4loKWxJek";
        assert!(verify(&key, id, 1_614_265_330, &sig, body));
        assert!(verify(
            &key,
            id,
            1_614_265_330,
            &format!("v1,bm9wZQ== {sig}"),
            body
        ));
        assert!(!verify(&key, id, 1_614_265_331, &sig, body));
        assert!(!verify(&key, "msg_other", 1_614_265_330, &sig, body));
        assert!(!verify(&key, id, 1_614_265_330, &sig, b"{}"));
        assert!(!verify(b"other", id, 1_614_265_330, &sig, body));
        assert!(!verify(&key, id, 1_614_265_330, "garbage", body));
    }

    #[test]
    fn secrets_round_trip_through_the_whsec_form() {
        let key = [7_u8; 32];
        assert_eq!(webhook_key(&whsec(&key)), key);
        // Not whsec: the string's bytes are the key.
        assert_eq!(webhook_key("plain secret"), b"plain secret");
        assert_eq!(webhook_key("whsec_!!!"), b"whsec_!!!");
    }
}
