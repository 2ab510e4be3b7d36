//! `NO_PROXY` rules, read as curl reads them.

use std::net::IpAddr;

/// The hosts that are reached directly even when a proxy is set.
#[derive(Debug, Clone, Default)]
pub(super) struct NoProxy {
    everything: bool,
    rules: Vec<Rule>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Rule {
    /// A name and all names under it.
    Domain(String),
    /// An address range; a single address has the full prefix length.
    Network { addr: IpAddr, prefix: u8 },
}

impl NoProxy {
    /// Reads a comma-separated list; entries that cannot be read are skipped, as curl does.
    pub(super) fn parse(list: &str) -> Self {
        let mut no_proxy = Self::default();
        for entry in list.split(',') {
            let entry = entry.trim().to_ascii_lowercase();
            if entry.is_empty() {
                continue;
            }
            if entry == "*" {
                no_proxy.everything = true;
                continue;
            }
            if let Some(rule) = Rule::parse(&entry) {
                no_proxy.rules.push(rule);
            }
        }
        no_proxy
    }

    /// Whether `host` (a name or an IP address, without brackets) bypasses the proxy.
    pub(super) fn matches(&self, host: &str) -> bool {
        if self.everything {
            return true;
        }
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        match host.parse::<IpAddr>() {
            Ok(ip) => self.rules.iter().any(|rule| match rule {
                Rule::Network { addr, prefix } => contains(*addr, *prefix, ip),
                Rule::Domain(_) => false,
            }),
            Err(_) => self.rules.iter().any(|rule| match rule {
                Rule::Domain(domain) => {
                    host == *domain
                        || host
                            .strip_suffix(domain.as_str())
                            .is_some_and(|rest| rest.ends_with('.'))
                }
                Rule::Network { .. } => false,
            }),
        }
    }
}

impl Rule {
    fn parse(entry: &str) -> Option<Self> {
        if let Some((addr, prefix)) = entry.split_once('/') {
            let addr: IpAddr = strip_brackets(addr).parse().ok()?;
            let prefix: u8 = prefix.parse().ok()?;
            return (prefix <= max_prefix(addr)).then_some(Self::Network { addr, prefix });
        }
        if let Ok(addr) = strip_brackets(entry).parse::<IpAddr>() {
            return Some(Self::Network {
                addr,
                prefix: max_prefix(addr),
            });
        }
        // A port on a name (`example.com:8080`) is ignored: matching is by host only.
        let name = entry.split(':').next().unwrap_or(entry);
        let name = name.trim_start_matches('*').trim_start_matches('.');
        let name = name.trim_end_matches('.');
        (!name.is_empty()).then(|| Self::Domain(name.to_owned()))
    }
}

fn strip_brackets(text: &str) -> &str {
    text.strip_prefix('[')
        .and_then(|inner| inner.strip_suffix(']'))
        .unwrap_or(text)
}

fn max_prefix(addr: IpAddr) -> u8 {
    match addr {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

fn contains(network: IpAddr, prefix: u8, ip: IpAddr) -> bool {
    match (network, ip) {
        (IpAddr::V4(network), IpAddr::V4(ip)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            u32::from(network) & mask == u32::from(ip) & mask
        }
        (IpAddr::V6(network), IpAddr::V6(ip)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            u128::from(network) & mask == u128::from(ip) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use test_case::test_case;

    use super::*;

    #[test_case("localhost", "localhost", true; "exact name")]
    #[test_case("example.com", "api.example.com", true; "subdomain")]
    #[test_case(".example.com", "example.com", true; "leading dot")]
    #[test_case("*.example.com", "a.b.example.com", true; "leading star")]
    #[test_case("example.com", "badexample.com", false; "suffix is not a subdomain")]
    #[test_case("Example.COM", "example.com.", true; "case and trailing dot")]
    #[test_case("example.com:8080", "example.com", true; "port ignored")]
    #[test_case("127.0.0.1", "127.0.0.1", true; "ip")]
    #[test_case("127.0.0.1", "127.0.0.2", false; "other ip")]
    #[test_case("10.0.0.0/8", "10.200.0.1", true; "cidr")]
    #[test_case("10.0.0.0/8", "11.0.0.1", false; "outside cidr")]
    #[test_case("0.0.0.0/0", "8.8.8.8", true; "zero prefix")]
    #[test_case("[::1]", "::1", true; "ipv6")]
    #[test_case("fd00::/8", "fd12::1", true; "ipv6 cidr")]
    #[test_case("*", "anything", true; "star")]
    #[test_case("", "anything", false; "empty")]
    #[test_case("details", "127.0.0.1", false; "name does not match ip")]
    fn hosts_match(list: &str, host: &str, expected: bool) {
        assert_eq!(NoProxy::parse(list).matches(host), expected);
    }

    #[test]
    fn bad_entries_are_skipped() {
        let no_proxy = NoProxy::parse("10.0.0.0/99, ,good.example");
        assert_eq!(no_proxy.rules, [Rule::Domain("good.example".into())]);
    }
}
