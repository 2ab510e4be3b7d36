//! Errors and helpers shared by the compilers that turn Envoy resources into runtime structures.

use std::time::Duration;

use bosun_xds::ConfigError as XdsError;
use bosun_xds::pb::google::protobuf::{Any, Duration as ProtoDuration};

/// Why a resource cannot be applied. The message names what is wrong; the resource's name is
/// added by whoever applies it (a NACK, or a bootstrap error).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The resource is inconsistent or refers to something impossible.
    #[error("{0}")]
    Invalid(String),
    /// The resource uses something bosun proxy does not implement.
    #[error("{0} is not supported by bosun proxy")]
    Unsupported(String),
    /// The resource (or an extension inside it) could not be read.
    #[error(transparent)]
    Xds(#[from] XdsError),
    /// A file named by the resource could not be read.
    #[error("reading {path}: {source}")]
    File {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

impl ConfigError {
    /// An invalid-configuration error.
    pub fn invalid(message: impl Into<String>) -> Self {
        ConfigError::Invalid(message.into())
    }

    /// An unsupported-feature error.
    pub fn unsupported(what: impl Into<String>) -> Self {
        ConfigError::Unsupported(what.into())
    }

    /// Prefixes the message with where it happened (`listener "x": `).
    pub fn context(self, context: impl std::fmt::Display) -> Self {
        ConfigError::Invalid(format!("{context}: {self}"))
    }
}

/// A protobuf duration as a standard one (negative durations are zero).
pub fn duration(d: &ProtoDuration) -> Duration {
    let secs = u64::try_from(d.seconds).unwrap_or(0);
    let nanos = u32::try_from(d.nanos).unwrap_or(0);
    Duration::new(secs, nanos)
}

/// An optional protobuf duration, with Envoy's convention that zero means "disabled".
pub fn optional_duration(d: Option<&ProtoDuration>) -> Option<Duration> {
    d.map(duration).filter(|d| !d.is_zero())
}

/// Decodes the `typed_config` of an extension, checking it against what bosun proxy supports.
pub fn typed_config<M: prost::Message + Default>(
    any: Option<&Any>,
    what: &str,
) -> Result<Option<M>, ConfigError> {
    match any {
        None => Ok(None),
        Some(any) => Ok(Some(
            bosun_xds::decode_any::<M>(any, crate::support::support())
                .map_err(|e| ConfigError::invalid(format!("{what}: {e}")))?,
        )),
    }
}

/// The message name of an `Any`'s type URL.
pub fn type_name(any: &Any) -> &str {
    any.type_url
        .rsplit_once('/')
        .map_or(any.type_url.as_str(), |(_, name)| name)
}

/// Reads an Envoy `DataSource` (inline text, inline bytes, or a file).
pub fn data_source(
    source: &bosun_xds::pb::envoy::config::core::v3::DataSource,
) -> Result<bytes::Bytes, ConfigError> {
    use bosun_xds::pb::envoy::config::core::v3::data_source::Specifier;
    match &source.specifier {
        Some(Specifier::InlineString(s)) => Ok(bytes::Bytes::from(s.clone())),
        Some(Specifier::InlineBytes(b)) => Ok(bytes::Bytes::from(b.clone())),
        Some(Specifier::Filename(path)) => {
            std::fs::read(path)
                .map(bytes::Bytes::from)
                .map_err(|source| ConfigError::File {
                    path: path.clone(),
                    source,
                })
        }
        Some(Specifier::EnvironmentVariable(name)) => std::env::var(name)
            .map(bytes::Bytes::from)
            .map_err(|_| ConfigError::invalid(format!("environment variable {name} is not set"))),
        None => Ok(bytes::Bytes::new()),
    }
}

/// The IP address and port of an Envoy `SocketAddress` (`what` names it in errors); a port left
/// unset is `default_port`.
pub fn ip_socket_address(
    socket: &bosun_xds::pb::envoy::config::core::v3::SocketAddress,
    what: &str,
    default_port: u16,
) -> Result<std::net::SocketAddr, ConfigError> {
    use bosun_xds::pb::envoy::config::core::v3::socket_address::PortSpecifier;
    let ip: std::net::IpAddr = socket.address.parse().map_err(|_| {
        ConfigError::invalid(format!("{what} {:?} is not an IP address", socket.address))
    })?;
    let port = match socket.port_specifier {
        Some(PortSpecifier::PortValue(p)) => u16::try_from(p)
            .map_err(|_| ConfigError::invalid(format!("{what} port {p} out of range")))?,
        None => default_port,
        Some(PortSpecifier::NamedPort(_)) => {
            return Err(ConfigError::unsupported(format!("{what} named ports")));
        }
    };
    Ok(std::net::SocketAddr::new(ip, port))
}
