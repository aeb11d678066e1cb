//! `web:`: the read-only web page of `argos bot` (served on `health.listen`): the address people
//! reach it at, how long a sign-in link and a session last, how much of a job's log the store
//! keeps, how often the overview reads the stacks' status, and the optional header an
//! authenticating proxy names the person in (honoured from the proxies' addresses only).

use std::net::IpAddr;

use serde::Deserialize;

/// The smallest log limit accepted: below it a job's head and tail say nothing useful.
pub const MIN_LOG_LIMIT_BYTES: u64 = 4096;

/// The largest: a job page renders the whole kept log.
pub const MAX_LOG_LIMIT_BYTES: u64 = 1 << 30;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebSettings {
    /// The page's address as people reach it (`https://argos.example.com`), without a trailing
    /// slash. Sign-in links and the status messages' job links start with it; unset, `web`
    /// says the page is not configured and status messages carry no link. Behind https the
    /// session cookie is marked Secure.
    pub public_url: Option<String>,
    /// How long a sign-in link from `web` stays valid (it is valid once).
    pub link_minutes: u64,
    /// How long a session lasts after signing in.
    pub session_hours: u64,
    /// The most of one job's log the store keeps, in bytes. A longer log keeps its first and
    /// last halves, and the page says how much was dropped in between.
    pub log_limit_bytes: u64,
    /// How long the overview's stack statuses are kept before they are read again (one
    /// DescribeStacks per AWS account, shared by every page load in that time).
    pub stack_status_secs: u64,
    /// The request header an authenticating proxy (oauth2-proxy, Pomerium) names the signed-in
    /// person in, e.g. `X-Forwarded-User`; its value is a name under `people:`. Unset (the
    /// default): only sign-in links open the page.
    pub trusted_header: Option<String>,
    /// The addresses (`10.0.0.5`) and networks (`10.0.0.0/24`, `fd00::/8`) of the proxies
    /// whose [`WebSettings::trusted_header`] is believed; from any other address the header is
    /// ignored. Required when the header is set.
    pub trusted_proxies: Vec<String>,
}

/// An address or network of `web.trusted_proxies`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrustedNet {
    addr: IpAddr,
    prefix: u8,
}

impl TrustedNet {
    /// `10.0.0.5`, `10.0.0.0/24`, `::1`, `fd00::/8`.
    pub fn parse(text: &str) -> Result<TrustedNet, String> {
        let (addr, prefix) = match text.trim().split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text.trim(), None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("'{text}' is not an IP address or network (10.0.0.5, 10.0.0.0/24, fd00::/8)"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("'{text}': the prefix length must be 0 to {max}"))?,
        };
        Ok(TrustedNet { addr, prefix })
    }

    /// Whether `peer` is in this network (an IPv4 peer seen as IPv6, `::ffff:a.b.c.d`, too).
    pub fn contains(&self, peer: IpAddr) -> bool {
        let bits = |ip: IpAddr| -> (u128, u32) {
            match ip.to_canonical() {
                IpAddr::V4(v4) => (u128::from(u32::from(v4)), 32),
                IpAddr::V6(v6) => (u128::from(v6), 128),
            }
        };
        let (net, width) = bits(self.addr);
        let (peer, peer_width) = bits(peer);
        if width != peer_width {
            return false;
        }
        let host_bits = width - u32::from(self.prefix);
        let mask = if host_bits >= 128 { 0 } else { u128::MAX << host_bits };
        (net & mask) == (peer & mask)
    }
}

/// Whether `name` is a valid HTTP header name (RFC 9110 token characters).
fn header_name_ok(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

impl Default for WebSettings {
    fn default() -> Self {
        WebSettings {
            public_url: None,
            link_minutes: 10,
            session_hours: 12,
            log_limit_bytes: 4 * 1024 * 1024,
            stack_status_secs: 30,
            trusted_header: None,
            trusted_proxies: Vec::new(),
        }
    }
}

impl WebSettings {
    /// The key at fault and what is wrong with it.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if let Some(url) = &self.public_url {
            let scheme_ok = url.starts_with("https://") || url.starts_with("http://");
            if !scheme_ok || url.ends_with('/') || url.chars().any(char::is_whitespace) {
                return Err((
                    "web.public_url",
                    format!("'{url}' must be an http:// or https:// address without a trailing slash, e.g. https://argos.example.com"),
                ));
            }
        }
        if self.link_minutes == 0 || self.link_minutes > 60 {
            return Err((
                "web.link_minutes",
                "must be 1 to 60 (a sign-in link is short-lived)".into(),
            ));
        }
        if self.session_hours == 0 || self.session_hours > 24 * 30 {
            return Err(("web.session_hours", "must be 1 to 720".into()));
        }
        if !(MIN_LOG_LIMIT_BYTES..=MAX_LOG_LIMIT_BYTES).contains(&self.log_limit_bytes) {
            return Err((
                "web.log_limit_bytes",
                format!("must be {MIN_LOG_LIMIT_BYTES} to {MAX_LOG_LIMIT_BYTES} (1 GiB)"),
            ));
        }
        if self.stack_status_secs == 0 || self.stack_status_secs > 3600 {
            return Err((
                "web.stack_status_secs",
                "must be 1 to 3600 (the overview reads the stacks' status at most this often)".into(),
            ));
        }
        self.check_trust()
    }

    fn check_trust(&self) -> Result<(), (&'static str, String)> {
        for proxy in &self.trusted_proxies {
            TrustedNet::parse(proxy).map_err(|e| ("web.trusted_proxies", e))?;
        }
        match &self.trusted_header {
            Some(name) if !header_name_ok(name) => Err((
                "web.trusted_header",
                format!("'{name}' is not an HTTP header name (e.g. X-Forwarded-User)"),
            )),
            Some(_) if self.trusted_proxies.is_empty() => Err((
                "web.trusted_proxies",
                "is required when web.trusted_header is set: list the authenticating proxy's addresses (e.g. [127.0.0.1]); the header is believed from those only".into(),
            )),
            None if !self.trusted_proxies.is_empty() => Err((
                "web.trusted_proxies",
                "has no effect without web.trusted_header: set the header your proxy names the person in, or remove the list".into(),
            )),
            _ => Ok(()),
        }
    }

    /// The networks of `web.trusted_proxies` (checked when the config loaded).
    pub fn trusted_nets(&self) -> Vec<TrustedNet> {
        self.trusted_proxies
            .iter()
            .filter_map(|p| TrustedNet::parse(p).ok())
            .collect()
    }

    /// Whether the session cookie must be marked Secure (the page is reached over https).
    pub fn secure_cookie(&self) -> bool {
        self.public_url.as_deref().is_some_and(|u| u.starts_with("https://"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trusted_proxies_are_addresses_and_networks() {
        let net = |t: &str| TrustedNet::parse(t).unwrap();
        let ip = |t: &str| t.parse::<IpAddr>().unwrap();
        assert!(net("10.0.0.0/24").contains(ip("10.0.0.77")));
        assert!(!net("10.0.0.0/24").contains(ip("10.0.1.1")));
        assert!(net("127.0.0.1").contains(ip("127.0.0.1")));
        assert!(!net("127.0.0.1").contains(ip("127.0.0.2")));
        assert!(net("127.0.0.1").contains(ip("::ffff:127.0.0.1")), "IPv4 seen as IPv6");
        assert!(net("fd00::/8").contains(ip("fd12::1")));
        assert!(!net("fd00::/8").contains(ip("10.0.0.1")));
        assert!(net("0.0.0.0/0").contains(ip("203.0.113.9")));
        for bad in ["10.0.0.0/33", "localhost", "10.0.0/8", "::1/129", ""] {
            assert!(TrustedNet::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_trusted_header_needs_its_proxies_and_a_header_name() {
        let with = |header: Option<&str>, proxies: &[&str]| WebSettings {
            trusted_header: header.map(str::to_string),
            trusted_proxies: proxies.iter().map(|p| p.to_string()).collect(),
            ..WebSettings::default()
        };
        assert_eq!(
            with(Some("X-Forwarded-User"), &["127.0.0.1", "10.0.0.0/8"]).check(),
            Ok(())
        );
        let key = |w: WebSettings| w.check().unwrap_err().0;
        assert_eq!(key(with(Some("X-Forwarded-User"), &[])), "web.trusted_proxies");
        assert_eq!(
            key(with(Some("X-Forwarded User"), &["127.0.0.1"])),
            "web.trusted_header"
        );
        assert_eq!(
            key(with(Some("X-Forwarded-User"), &["10.0.0.0/40"])),
            "web.trusted_proxies"
        );
        assert_eq!(key(with(None, &["127.0.0.1"])), "web.trusted_proxies");
    }

    #[test]
    fn bad_values_name_their_key() {
        let ok = WebSettings::default();
        assert_eq!(ok.check(), Ok(()));
        assert!(!ok.secure_cookie());
        for (bad, key) in [
            (
                WebSettings {
                    public_url: Some("argos.example.com".into()),
                    ..WebSettings::default()
                },
                "web.public_url",
            ),
            (
                WebSettings {
                    public_url: Some("https://argos.example.com/".into()),
                    ..WebSettings::default()
                },
                "web.public_url",
            ),
            (
                WebSettings {
                    link_minutes: 0,
                    ..WebSettings::default()
                },
                "web.link_minutes",
            ),
            (
                WebSettings {
                    session_hours: 10_000,
                    ..WebSettings::default()
                },
                "web.session_hours",
            ),
            (
                WebSettings {
                    log_limit_bytes: u64::MAX,
                    ..WebSettings::default()
                },
                "web.log_limit_bytes",
            ),
            (
                WebSettings {
                    stack_status_secs: 0,
                    ..WebSettings::default()
                },
                "web.stack_status_secs",
            ),
        ] {
            assert_eq!(bad.check().unwrap_err().0, key);
        }
        let https = WebSettings {
            public_url: Some("https://argos.example.com".into()),
            ..WebSettings::default()
        };
        assert_eq!(https.check(), Ok(()));
        assert!(https.secure_cookie(), "behind https the cookie is Secure");
    }
}
