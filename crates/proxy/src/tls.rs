//! TLS from Envoy's `UpstreamTlsContext` and `DownstreamTlsContext`, with rustls (aws-lc-rs).

use std::sync::Arc;

use bosun_xds::pb::envoy::extensions::transport_sockets::tls::v3::{
    CommonTlsContext, DownstreamTlsContext, UpstreamTlsContext, tls_parameters::TlsProtocol,
};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use crate::config::{ConfigError, data_source};

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn versions(common: &CommonTlsContext) -> Vec<&'static rustls::SupportedProtocolVersion> {
    let params = common.tls_params.as_ref();
    let min = params.map_or(0, |p| p.tls_minimum_protocol_version);
    let max = params.map_or(0, |p| p.tls_maximum_protocol_version);
    let allows = |version: TlsProtocol| {
        let v = version as i32;
        (min == 0 || min <= v) && (max == 0 || v <= max)
    };
    let mut out = Vec::new();
    if allows(TlsProtocol::TlSv12) {
        out.push(&rustls::version::TLS12);
    }
    if allows(TlsProtocol::TlSv13) {
        out.push(&rustls::version::TLS13);
    }
    if out.is_empty() {
        out.push(&rustls::version::TLS13);
    }
    out
}

fn certificates(
    common: &CommonTlsContext,
) -> Result<Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>, ConfigError> {
    let Some(cert) = common.tls_certificates.first() else {
        return Ok(None);
    };
    if common.tls_certificates.len() > 1 {
        return Err(ConfigError::unsupported(
            "more than one tls_certificates entry",
        ));
    }
    let chain_pem = cert
        .certificate_chain
        .as_ref()
        .map(data_source)
        .transpose()?
        .unwrap_or_default();
    let key_pem = cert
        .private_key
        .as_ref()
        .map(data_source)
        .transpose()?
        .unwrap_or_default();
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&chain_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| ConfigError::invalid(format!("certificate_chain: {e}")))?;
    if chain.is_empty() {
        return Err(ConfigError::invalid(
            "certificate_chain holds no certificate",
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| ConfigError::invalid(format!("private_key: {e}")))?;
    Ok(Some((chain, key)))
}

fn trusted_roots(common: &CommonTlsContext) -> Result<Option<rustls::RootCertStore>, ConfigError> {
    use bosun_xds::pb::envoy::extensions::transport_sockets::tls::v3::common_tls_context::ValidationContextType;
    let Some(ValidationContextType::ValidationContext(validation)) =
        &common.validation_context_type
    else {
        if common.validation_context_type.is_some() {
            return Err(ConfigError::unsupported(
                "validation context other than validation_context",
            ));
        }
        return Ok(None);
    };
    let Some(trusted) = &validation.trusted_ca else {
        return Ok(None);
    };
    let pem = data_source(trusted)?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| ConfigError::invalid(format!("trusted_ca: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| ConfigError::invalid(format!("trusted_ca: {e}")))?;
    }
    Ok(Some(roots))
}

/// What is needed to open TLS connections to a cluster's endpoints.
#[derive(Clone)]
pub struct TlsConnector {
    connector: tokio_rustls::TlsConnector,
    /// The SNI to send; none when the context sets none (as Envoy).
    pub sni: Option<ServerName<'static>>,
    /// Whether `h2` was offered through ALPN.
    pub offers_h2: bool,
}

impl std::fmt::Debug for TlsConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConnector")
            .field("sni", &self.sni)
            .finish_non_exhaustive()
    }
}

impl TlsConnector {
    /// Builds the client side of an `UpstreamTlsContext`.
    pub fn from_envoy(context: &UpstreamTlsContext) -> Result<Self, ConfigError> {
        let common = context.common_tls_context.clone().unwrap_or_default();
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&versions(&common))
            .map_err(|e| ConfigError::invalid(e.to_string()))?;
        let builder = match trusted_roots(&common)? {
            Some(roots) => builder.with_root_certificates(roots),
            // Envoy does not verify the server when no validation context is given.
            None => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnyServer(provider()))),
        };
        let mut config = match certificates(&common)? {
            Some((chain, key)) => builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| ConfigError::invalid(format!("client certificate: {e}")))?,
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = common
            .alpn_protocols
            .iter()
            .map(|p| p.as_bytes().to_vec())
            .collect();
        let offers_h2 = common.alpn_protocols.iter().any(|p| p == "h2");
        let sni = if context.sni.is_empty() {
            config.enable_sni = false;
            None
        } else {
            Some(
                ServerName::try_from(context.sni.clone())
                    .map_err(|_| ConfigError::invalid(format!("invalid sni {:?}", context.sni)))?,
            )
        };
        Ok(TlsConnector {
            connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
            sni,
            offers_h2,
        })
    }

    /// Opens TLS over `stream` to an endpoint at `address`.
    pub async fn connect(
        &self,
        address: std::net::IpAddr,
        stream: tokio::net::TcpStream,
    ) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
        let name = self
            .sni
            .clone()
            .unwrap_or_else(|| ServerName::IpAddress(address.into()));
        self.connector.connect(name, stream).await
    }
}

/// Builds the server side of a `DownstreamTlsContext`.
pub fn server_config(
    context: &DownstreamTlsContext,
) -> Result<Arc<rustls::ServerConfig>, ConfigError> {
    let common = context.common_tls_context.clone().unwrap_or_default();
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&versions(&common))
        .map_err(|e| ConfigError::invalid(e.to_string()))?;
    let require_client = context
        .require_client_certificate
        .as_ref()
        .is_some_and(|b| b.value);
    let builder = match trusted_roots(&common)? {
        Some(roots) => {
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider(),
            );
            let verifier = if require_client {
                verifier.build()
            } else {
                verifier.allow_unauthenticated().build()
            }
            .map_err(|e| ConfigError::invalid(format!("client verification: {e}")))?;
            builder.with_client_cert_verifier(verifier)
        }
        None if require_client => {
            return Err(ConfigError::invalid(
                "require_client_certificate needs a validation_context with trusted_ca",
            ));
        }
        None => builder.with_no_client_auth(),
    };
    let Some((chain, key)) = certificates(&common)? else {
        return Err(ConfigError::invalid(
            "a downstream TLS context needs tls_certificates",
        ));
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| ConfigError::invalid(format!("server certificate: {e}")))?;
    config.alpn_protocols = common
        .alpn_protocols
        .iter()
        .map(|p| p.as_bytes().to_vec())
        .collect();
    Ok(Arc::new(config))
}

/// The verifier Envoy's behaviour calls for when no `validation_context` is configured.
#[derive(Debug)]
struct AcceptAnyServer(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyServer {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
