//! Istio's Bookinfo: `productpage` calls `details` and `reviews`; `reviews` v2 and v3 call
//! `ratings`. All listen on port 9080 and answer as Istio's images
//! (`examples-bookinfo-*-v1`, `-reviews-v2`, `-reviews-v3`) do, so they mix with real ones.

pub mod details;
pub mod productpage;
pub mod ratings;
pub mod reviews;

use std::fmt;

/// The port every Bookinfo service listens on and calls the others on.
pub const PORT: u16 = 9080;

/// Where a Bookinfo service reaches another one: `http://{host}:{port}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceAddress {
    /// Host name or IP address, such as `details` or `details.default.svc.cluster.local`.
    pub host: String,
    /// Port, 9080 unless `*_SERVICE_PORT` says otherwise.
    pub port: u16,
}

impl ServiceAddress {
    /// `host:port`.
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        Self {
            host: host.into(),
            port,
        }
    }

    /// The address the real apps compute from their environment: `{hostname or
    /// default_host}{.services_domain if set}:{port or 9080}`, as from `DETAILS_HOSTNAME`,
    /// `SERVICES_DOMAIN` and `DETAILS_SERVICE_PORT`.
    pub fn bookinfo(
        default_host: &str,
        hostname: Option<&str>,
        services_domain: Option<&str>,
        port: Option<u16>,
    ) -> Self {
        let name = hostname.filter(|h| !h.is_empty()).unwrap_or(default_host);
        let host = match services_domain.filter(|d| !d.is_empty()) {
            Some(domain) => format!("{name}.{domain}"),
            None => name.to_owned(),
        };
        Self::new(host, port.unwrap_or(PORT))
    }

    /// The URL of `path` (which starts with `/`) on this service.
    pub fn url(&self, path: &str) -> String {
        format!("http://{self}{path}")
    }
}

impl fmt::Display for ServiceAddress {
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
    fn addresses_follow_the_real_apps_environment() {
        let default = ServiceAddress::bookinfo("details", None, None, None);
        assert_eq!(default.url("/details/0"), "http://details:9080/details/0");
        let custom = ServiceAddress::bookinfo(
            "details",
            Some("books"),
            Some("prod.svc.cluster.local"),
            Some(80),
        );
        assert_eq!(custom.to_string(), "books.prod.svc.cluster.local:80");
        let empty = ServiceAddress::bookinfo("ratings", Some(""), Some(""), None);
        assert_eq!(empty.to_string(), "ratings:9080");
        assert_eq!(
            ServiceAddress::new("::1", 9080).url("/"),
            "http://[::1]:9080/"
        );
    }
}
