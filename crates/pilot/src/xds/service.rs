//! The `AggregatedDiscoveryService` gRPC service, written out rather than generated so that
//! state-of-the-world responses carry their resources as already-encoded `Any`s, passed to
//! HTTP/2 without a copy.
//!
//! A resource is encoded once per push context and shared by every proxy that holds it; with
//! the generated service each response would copy every resource into a fresh `Any`, and
//! tonic's encoder would copy it again into a per-stream buffer that keeps the capacity of the
//! largest response it ever sent (half a megabyte per sidecar for a mesh's route table).
//! [`EncodedDiscoveryResponse`] is the same message on the wire as `DiscoveryResponse` (field
//! 2, `repeated Any resources`, is written from the encoded bytes), and [`SotwBody`] frames it
//! for gRPC as a list of chunks in which a large resource is its own shared `Bytes`.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bosun_xds::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest,
};
use bytes::{BufMut, Bytes, BytesMut};
use http_body::Frame;
use prost::encoding::{WireType, encode_key, encode_varint};
use tokio::sync::mpsc;
use tonic::codec::Codec;
use tonic::codegen::{Body, BoxFuture, Service, StdError, http};
use tonic::server::{Grpc, NamedService, StreamingService};
use tonic::{Status, Streaming};
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
/// Resources smaller than this are copied into the chunk being written; larger ones are sent
/// as their own chunk (a DATA frame costs 9 bytes and h2 writes a chunk of 256 bytes or more
/// from its own buffer, without copying it).
const COPY_BELOW: usize = 4096;

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
            SOTW_PATH => Box::pin(async move { Ok(sotw(&server, request)) }),
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

/// A state-of-the-world stream: requests decoded by tonic, responses framed by [`SotwBody`].
fn sotw<B>(server: &AdsServer, request: http::Request<B>) -> http::Response<tonic::body::Body>
where
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    if let Some(refusal) = unsupported_encoding(request.headers()) {
        return refusal.into_http();
    }
    let mut codec = ProstCodec::<EncodedDiscoveryResponse, DiscoveryRequest>::default();
    let requests = Streaming::new_request(
        codec.decoder(),
        request.into_body(),
        None,
        Some(MAX_REQUEST),
    );
    let body = SotwBody::new(server.stream_aggregated_resources(requests));
    let mut response = http::Response::new(tonic::body::Body::new(body));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/grpc"),
    );
    response
}

/// Why a request compressed with `grpc-encoding` is refused: nothing here compresses or
/// decompresses (tonic is built without compression), as tonic's own server would answer.
fn unsupported_encoding(headers: &http::HeaderMap) -> Option<Status> {
    let encoding = headers.get("grpc-encoding")?;
    (encoding != "identity").then(|| {
        Status::unimplemented(format!(
            "grpc-encoding {} is not supported",
            String::from_utf8_lossy(encoding.as_bytes())
        ))
    })
}

/// The response body of a state-of-the-world stream: each response as gRPC frames it, in
/// chunks that pass large resources through as the shared bytes they are, then the trailers
/// with the stream's status.
pub(super) struct SotwBody {
    responses: mpsc::Receiver<Result<EncodedDiscoveryResponse, Status>>,
    chunks: VecDeque<Bytes>,
    ended: bool,
}

impl SotwBody {
    fn new(responses: mpsc::Receiver<Result<EncodedDiscoveryResponse, Status>>) -> Self {
        SotwBody {
            responses,
            chunks: VecDeque::new(),
            ended: false,
        }
    }

    fn trailers(status: &Status) -> Frame<Bytes> {
        let mut trailers = http::HeaderMap::new();
        if status.add_header(&mut trailers).is_err() {
            trailers.insert("grpc-status", http::HeaderValue::from_static("13"));
        }
        Frame::trailers(trailers)
    }
}

impl Body for SotwBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        loop {
            if let Some(chunk) = self.chunks.pop_front() {
                return Poll::Ready(Some(Ok(Frame::data(chunk))));
            }
            if self.ended {
                return Poll::Ready(None);
            }
            let status = match ready!(self.responses.poll_recv(cx)) {
                Some(Ok(response)) => match grpc_chunks(&response) {
                    Ok(chunks) => {
                        self.chunks = chunks;
                        continue;
                    }
                    Err(status) => status,
                },
                Some(Err(status)) => status,
                None => Status::ok(""),
            };
            self.ended = true;
            self.responses.close();
            return Poll::Ready(Some(Ok(Self::trailers(&status))));
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended && self.chunks.is_empty()
    }
}

/// `response` as one gRPC message (the 5-byte prefix, then the protobuf encoding), in chunks:
/// small fields and resources copied together, each large resource its own chunk.
fn grpc_chunks(response: &EncodedDiscoveryResponse) -> Result<VecDeque<Bytes>, Status> {
    use prost::Message;
    let length = response.encoded_len();
    let Some(prefix_length) = u32::try_from(length)
        .ok()
        .filter(|_| length <= MAX_RESPONSE)
    else {
        return Err(Status::resource_exhausted(format!(
            "a {} response of {length} bytes is larger than {MAX_RESPONSE}",
            response.type_url
        )));
    };
    let copied: usize = response
        .resources
        .iter()
        .filter(|r| r.len() < COPY_BELOW)
        .map(Bytes::len)
        .sum();
    let mut chunks = VecDeque::new();
    let mut current = BytesMut::with_capacity(
        64 + response.version_info.len()
            + response.type_url.len()
            + response.nonce.len()
            + copied
            + 11 * response.resources.len(),
    );
    current.put_u8(0);
    current.put_u32(prefix_length);
    if !response.version_info.is_empty() {
        prost::encoding::string::encode(1, &response.version_info, &mut current);
    }
    for resource in &response.resources {
        encode_key(2, WireType::LengthDelimited, &mut current);
        encode_varint(resource.len() as u64, &mut current);
        if resource.len() < COPY_BELOW {
            current.put_slice(resource);
        } else {
            chunks.push_back(current.split().freeze());
            chunks.push_back(resource.clone());
        }
    }
    for (tag, value) in [(4, &response.type_url), (5, &response.nonce)] {
        if !value.is_empty() {
            prost::encoding::string::encode(tag, value, &mut current);
        }
    }
    if !current.is_empty() {
        chunks.push_back(current.freeze());
    }
    debug_assert_eq!(chunks.iter().map(Bytes::len).sum::<usize>(), 5 + length);
    Ok(chunks)
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

    #[test]
    fn chunks_are_the_grpc_message_and_large_resources_are_not_copied() {
        let small = Any {
            type_url: "type.googleapis.com/envoy.config.route.v3.RouteConfiguration".into(),
            value: vec![10, 4, b'9', b'0', b'8', b'0'],
        };
        let large = Any {
            type_url: small.type_url.clone(),
            value: vec![7; 3 * COPY_BELOW],
        };
        let large_bytes = Bytes::from(large.encode_to_vec());
        let response = EncodedDiscoveryResponse {
            version_info: "2026-12-07T00:00:00Z/4".into(),
            resources: vec![
                small.encode_to_vec().into(),
                large_bytes.clone(),
                small.encode_to_vec().into(),
            ],
            type_url: small.type_url.clone(),
            nonce: "3-9".into(),
        };
        let chunks = grpc_chunks(&response).unwrap();
        assert_eq!(chunks.len(), 3, "head, the large resource, the rest");
        assert_eq!(chunks[1].as_ptr(), large_bytes.as_ptr());

        let wire: Vec<u8> = chunks.iter().flat_map(|c| c.iter().copied()).collect();
        let message = response.encode_to_vec();
        assert_eq!(wire[0], 0, "not compressed");
        assert_eq!(wire[1..5], (message.len() as u32).to_be_bytes());
        assert_eq!(wire[5..], message[..]);
        let decoded = DiscoveryResponse::decode(&wire[5..]).unwrap();
        assert_eq!(decoded.resources, vec![small.clone(), large, small]);
        assert_eq!(decoded.nonce, "3-9");
    }

    #[test]
    fn an_empty_response_is_still_a_message() {
        let chunks = grpc_chunks(&EncodedDiscoveryResponse::default()).unwrap();
        let wire: Vec<u8> = chunks.iter().flat_map(|c| c.iter().copied()).collect();
        assert_eq!(wire, [0, 0, 0, 0, 0]);
    }

    #[test]
    fn a_compressed_stream_is_refused_with_unimplemented() {
        let mut headers = http::HeaderMap::new();
        assert!(unsupported_encoding(&headers).is_none());
        headers.insert("grpc-encoding", http::HeaderValue::from_static("identity"));
        assert!(unsupported_encoding(&headers).is_none());
        headers.insert("grpc-encoding", http::HeaderValue::from_static("gzip"));
        let refusal = unsupported_encoding(&headers).unwrap();
        assert_eq!(refusal.code(), tonic::Code::Unimplemented);
        assert!(refusal.message().contains("gzip"));
    }
}
