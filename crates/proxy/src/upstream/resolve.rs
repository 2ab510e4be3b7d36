//! How DNS clusters (STRICT_DNS, LOGICAL_DNS) turn names into addresses.
//!
//! By default through the system's resolver (`getaddrinfo`: `/etc/hosts`, `/etc/resolv.conf`),
//! as Envoy's default resolver also reads them. A cluster that follows record TTLs
//! (`respect_dns_ttl`) or names its own name servers (`typed_dns_resolver_config` with
//! `envoy.network.dns_resolver.cares`) needs answers with their TTLs, so it gets a DNS client
//! of its own.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bosun_xds::pb::envoy::config::cluster::v3::{Cluster as ClusterProto, cluster};
use bosun_xds::pb::envoy::config::core::v3::address;
use bosun_xds::pb::envoy::extensions::network::dns_resolver::cares::v3::CaresDnsResolverConfig;
use hickory_resolver::TokioResolver;
use hickory_resolver::config::{
    ConnectionConfig, LookupIpStrategy, NameServerConfig, ResolverConfig,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;

use crate::config::ConfigError;
use crate::support::CARES_DNS_RESOLVER;

/// Where a DNS cluster's names are resolved.
#[derive(Clone, Debug)]
pub(crate) enum NameResolver {
    /// The system's resolver, which tells no TTLs.
    System,
    /// A DNS client: answers come with their TTLs.
    Client(Box<TokioResolver>),
}

/// The addresses of one name and, from a DNS client, how long they are valid.
#[derive(Debug)]
pub(crate) struct Resolved {
    pub(crate) addresses: Vec<SocketAddr>,
    pub(crate) ttl: Option<Duration>,
}

impl NameResolver {
    /// The resolver a cluster asks for.
    pub(crate) fn for_cluster(
        config: &ClusterProto,
        family: cluster::DnsLookupFamily,
    ) -> Result<NameResolver, ConfigError> {
        let servers = name_servers(config)?;
        if servers.is_empty() && !config.respect_dns_ttl {
            return Ok(NameResolver::System);
        }
        let mut builder = if servers.is_empty() {
            match TokioResolver::builder_tokio() {
                Ok(builder) => builder,
                Err(error) => {
                    // Without a readable resolv.conf there are no name servers to ask for
                    // TTLs; the system's resolver still answers (from /etc/hosts at least).
                    tracing::warn!(%error, "no DNS configuration: TTLs cannot be followed");
                    return Ok(NameResolver::System);
                }
            }
        } else {
            let mut resolver_config = ResolverConfig::from_parts(None, Vec::new(), Vec::new());
            for server in servers {
                let mut udp = ConnectionConfig::udp();
                udp.port = server.port();
                let mut tcp = ConnectionConfig::tcp();
                tcp.port = server.port();
                resolver_config.add_name_server(NameServerConfig::new(
                    server.ip(),
                    true,
                    vec![udp, tcp],
                ));
            }
            TokioResolver::builder_with_config(resolver_config, TokioRuntimeProvider::default())
        };
        builder.options_mut().ip_strategy = match family {
            cluster::DnsLookupFamily::V4Only => LookupIpStrategy::Ipv4Only,
            cluster::DnsLookupFamily::V6Only => LookupIpStrategy::Ipv6Only,
            cluster::DnsLookupFamily::V4Preferred => LookupIpStrategy::Ipv4thenIpv6,
            cluster::DnsLookupFamily::Auto => LookupIpStrategy::Ipv6thenIpv4,
            cluster::DnsLookupFamily::All => LookupIpStrategy::Ipv4AndIpv6,
        };
        let resolver = builder
            .build()
            .map_err(|e| ConfigError::invalid(format!("building the DNS resolver: {e}")))?;
        Ok(NameResolver::Client(Box::new(resolver)))
    }

    /// The addresses of `name` (an IP address stands for itself, valid for ever).
    pub(crate) async fn resolve(&self, name: &str, port: u16) -> Result<Resolved, ConfigError> {
        if let Ok(ip) = name.parse::<IpAddr>() {
            return Ok(Resolved {
                addresses: vec![SocketAddr::new(ip, port)],
                ttl: None,
            });
        }
        let failed =
            |e: &dyn std::fmt::Display| ConfigError::invalid(format!("resolving {name}: {e}"));
        match self {
            NameResolver::System => Ok(Resolved {
                addresses: tokio::net::lookup_host((name, port))
                    .await
                    .map_err(|e| failed(&e))?
                    .collect(),
                ttl: None,
            }),
            NameResolver::Client(resolver) => {
                let lookup = resolver.lookup_ip(name).await.map_err(|e| failed(&e))?;
                let ttl = lookup
                    .valid_until()
                    .saturating_duration_since(std::time::Instant::now());
                Ok(Resolved {
                    addresses: lookup.iter().map(|ip| SocketAddr::new(ip, port)).collect(),
                    ttl: Some(ttl),
                })
            }
        }
    }
}

/// The name servers of `typed_dns_resolver_config` (c-ares' `resolvers`), if any.
fn name_servers(config: &ClusterProto) -> Result<Vec<SocketAddr>, ConfigError> {
    let Some(typed) = &config.typed_dns_resolver_config else {
        return Ok(Vec::new());
    };
    if typed
        .typed_config
        .as_ref()
        .is_some_and(|any| crate::config::type_name(any) != CARES_DNS_RESOLVER)
    {
        return Err(ConfigError::unsupported(format!(
            "DNS resolver {:?}",
            typed.name
        )));
    }
    let cares: CaresDnsResolverConfig =
        crate::config::typed_config(typed.typed_config.as_ref(), "typed_dns_resolver_config")?
            .ok_or_else(|| {
                ConfigError::invalid("typed_dns_resolver_config needs a typed_config")
            })?;
    cares
        .resolvers
        .iter()
        .map(|resolver| match &resolver.address {
            Some(address::Address::SocketAddress(socket)) => {
                crate::config::ip_socket_address(socket, "DNS resolver", 53)
            }
            _ => Err(ConfigError::unsupported(
                "DNS resolvers other than socket addresses",
            )),
        })
        .collect()
}
