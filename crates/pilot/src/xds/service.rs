//! The `AggregatedDiscoveryService` gRPC service, written out rather than generated so that
//! state-of-the-world responses carry their resources as already-encoded `Any`s.
//!
//! A resource is encoded once per push context and shared by every proxy that holds it; with
//! the generated service each response would copy every resource into a fresh `Any` before
//! gRPC copies it again into its frame. [`EncodedDiscoveryResponse`] is the same message on
//! the wire as `DiscoveryResponse` (field 2, `repeated Any resources`, is written from the
//! encoded bytes), so clients see no difference.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use bosun_xds::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest,
};
use bytes::Bytes;
use tonic::codegen::{Body, BoxFuture, Service, StdError, http};
use tonic::server::{Grpc, NamedService, StreamingService};
use tonic_prost::ProstCodec;

use super::{AdsServer, ResponseStream};

const SOTW_PATH: &str =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources";
const DELTA_PATH: &str =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources";
/// Requests larger than this are refused (a proxy's subscription is far smaller).
const MAX_REQUEST: usize = 64 * 1024 * 1024;
/// Responses larger than this are refused rather than sent.
const MAX_RESPONSE: usize = 256 * 1024 * 1024;

/// `envoy.service.discovery.v3.DiscoveryResponse` with its resources already encoded.
#[derive(Clone, PartialEq, prost::Message)]
pub struct EncodedDiscoveryResponse {
    /// `version_info`.
    #[prost(string, tag = "1")]
    pub version_info: String,
    /// `resources`: each the encoding of a `google.protobuf.Any`.
    #[prost(bytes = "bytes", repeated, tag = "2")]
    pub resources: Vec<Bytes>,
    /// `type_url`.
    #[prost(string, tag = "4")]
    pub type_url: String,
    /// `nonce`.
    #[prost(string, tag = "5")]
    pub nonce: String,
}

/// The ADS service as tonic serves it.
#[derive(Clone, Debug)]
pub struct AdsService {
    server: Arc<AdsServer>,
}

impl AdsService {
    pub(super) fn new(server: AdsServer) -> Self {
        AdsService {
            server: Arc::new(server),
        }
    }
}

impl NamedService for AdsService {
    const NAME: &'static str = "envoy.service.discovery.v3.AggregatedDiscoveryService";
}

impl<B> Service<http::Request<B>> for AdsService
where
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let server = self.server.clone();
        match request.uri().path() {
            SOTW_PATH => Box::pin(async move {
                let codec = ProstCodec::<EncodedDiscoveryResponse, DiscoveryRequest>::default();
                let mut grpc = Grpc::new(codec)
                    .apply_max_message_size_config(Some(MAX_REQUEST), Some(MAX_RESPONSE));
                Ok(grpc.streaming(Sotw(server), request).await)
            }),
            DELTA_PATH => Box::pin(async move {
                let codec = ProstCodec::<DeltaDiscoveryResponse, DeltaDiscoveryRequest>::default();
                let mut grpc = Grpc::new(codec)
                    .apply_max_message_size_config(Some(MAX_REQUEST), Some(MAX_RESPONSE));
                Ok(grpc.streaming(Delta(server), request).await)
            }),
            _ => Box::pin(async move { Ok(tonic::Status::unimplemented("").into_http()) }),
        }
    }
}

struct Sotw(Arc<AdsServer>);

impl StreamingService<DiscoveryRequest> for Sotw {
    type Response = EncodedDiscoveryResponse;
    type ResponseStream = ResponseStream<EncodedDiscoveryResponse>;
    type Future = BoxFuture<tonic::Response<Self::ResponseStream>, tonic::Status>;

    fn call(
        &mut self,
        request: tonic::Request<tonic::Streaming<DiscoveryRequest>>,
    ) -> Self::Future {
        let server = self.0.clone();
        Box::pin(async move { server.stream_aggregated_resources(request).await })
    }
}

struct Delta(Arc<AdsServer>);

impl StreamingService<DeltaDiscoveryRequest> for Delta {
    type Response = DeltaDiscoveryResponse;
    type ResponseStream = ResponseStream<DeltaDiscoveryResponse>;
    type Future = BoxFuture<tonic::Response<Self::ResponseStream>, tonic::Status>;

    fn call(
        &mut self,
        request: tonic::Request<tonic::Streaming<DeltaDiscoveryRequest>>,
    ) -> Self::Future {
        let server = self.0.clone();
        Box::pin(async move { server.delta_aggregated_resources(request).await })
    }
}

#[cfg(test)]
mod tests {
    use bosun_xds::pb::envoy::service::discovery::v3::DiscoveryResponse;
    use bosun_xds::pb::google::protobuf::Any;
    use prost::Message;

    use super::*;

    #[test]
    fn an_encoded_response_is_a_discovery_response_on_the_wire() {
        let any = Any {
            type_url: "type.googleapis.com/envoy.config.cluster.v3.Cluster".into(),
            value: vec![10, 3, b'a', b'b', b'c'],
        };
        let encoded = EncodedDiscoveryResponse {
            version_info: "v1".into(),
            resources: vec![any.encode_to_vec().into(), any.encode_to_vec().into()],
            type_url: any.type_url.clone(),
            nonce: "7".into(),
        };
        let decoded = DiscoveryResponse::decode(encoded.encode_to_vec().as_slice()).unwrap();
        assert_eq!(
            decoded,
            DiscoveryResponse {
                version_info: "v1".into(),
                resources: vec![any.clone(), any.clone()],
                type_url: any.type_url,
                nonce: "7".into(),
                ..Default::default()
            }
        );
    }
}
