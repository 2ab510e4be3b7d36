//! The DNS proxy beside a sidecar (what Istio's agent does with `DNS_CAPTURE`): iptables sends
//! the workload's DNS queries here; names of the mesh are answered from the name table pilot
//! sends (NDS), so unmodified apps resolve `reviews` to its service address; other names are
//! forwarded to an upstream resolver when one is configured, and refused as unknown
//! (`NXDOMAIN`) when none is.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use bosun_xds::istio::NameTable;
use hickory_proto::op::{Message, MessageType, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{RData, Record, RecordType};
use tokio::net::UdpSocket;

/// How long clients may cache an answer (Istio's DNS proxy answers with 30 s).
const TTL: u32 = 30;
/// How long a forwarded query waits for the upstream resolver.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest DNS message over UDP with EDNS.
const MAX_MESSAGE: usize = 4096;

/// The mesh's host names, every alias expanded, lowercase and without the final dot.
#[derive(Debug, Default)]
pub struct Names {
    by_host: HashMap<String, Vec<IpAddr>>,
    /// The TTL of answers, when not Istio's 30 s.
    ttl: Option<u32>,
}

impl Names {
    /// Indexes a name table. Addresses that do not parse are left out.
    pub fn from_table(table: &NameTable) -> Self {
        let mut by_host = HashMap::new();
        for (host, info) in &table.table {
            let ips: Vec<IpAddr> = info.ips.iter().filter_map(|ip| ip.parse().ok()).collect();
            for name in std::iter::once(host).chain(info.alt_hosts.iter()) {
                by_host.insert(normalize(name), ips.clone());
            }
        }
        Names { by_host, ttl: None }
    }

    /// The same names, answered with this TTL (seconds).
    pub fn with_ttl(mut self, ttl: u32) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// The addresses of `name`, if the mesh knows it.
    pub fn lookup(&self, name: &str) -> Option<&[IpAddr]> {
        self.by_host.get(&normalize(name)).map(Vec::as_slice)
    }

    /// How many names are known.
    pub fn len(&self) -> usize {
        self.by_host.len()
    }

    /// Whether no name is known.
    pub fn is_empty(&self) -> bool {
        self.by_host.is_empty()
    }
}

fn normalize(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// What to do with a query.
#[derive(Debug, PartialEq, Eq)]
enum Reply {
    /// Answer with these bytes.
    Answer(Vec<u8>),
    /// Not a mesh name: ask the upstream resolver.
    Forward,
    /// Not even a DNS message: say nothing.
    Drop,
}

/// Answers `query` from `names`, or says it must be forwarded (`can_forward`) or refused.
fn reply(query: &[u8], names: &Names, can_forward: bool) -> Reply {
    let Ok(request) = Message::from_vec(query) else {
        return Reply::Drop;
    };
    if request.metadata.message_type != MessageType::Query {
        return Reply::Drop;
    }
    let mut response = Message::new(
        request.metadata.id,
        MessageType::Response,
        request.metadata.op_code,
    );
    response.metadata = Metadata::response_from_request(&request.metadata);
    response.metadata.recursion_available = true;
    response.add_queries(request.queries.iter().cloned());
    let question = match (request.metadata.op_code, request.queries.as_slice()) {
        (OpCode::Query, [question]) => question,
        _ => {
            response.metadata.response_code = ResponseCode::NotImp;
            return encode(&response);
        }
    };
    let name = question.name().to_ascii();
    let Some(addresses) = names.lookup(&name) else {
        if can_forward {
            return Reply::Forward;
        }
        response.metadata.response_code = ResponseCode::NXDomain;
        return encode(&response);
    };
    response.metadata.authoritative = true;
    for address in addresses {
        let rdata = match (question.query_type(), address) {
            (RecordType::A, IpAddr::V4(v4)) => RData::A(A(*v4)),
            (RecordType::AAAA, IpAddr::V6(v6)) => RData::AAAA(AAAA(*v6)),
            // A known name without an address of this type: an empty answer (NODATA).
            _ => continue,
        };
        let ttl = names.ttl.unwrap_or(TTL);
        response.add_answer(Record::from_rdata(question.name().clone(), ttl, rdata));
    }
    encode(&response)
}

fn encode(message: &Message) -> Reply {
    match message.to_vec() {
        Ok(bytes) => Reply::Answer(bytes),
        Err(error) => {
            tracing::warn!(%error, "cannot encode a DNS answer");
            Reply::Drop
        }
    }
}

/// Serves DNS on `socket` from `names` until the task is dropped.
pub async fn serve(socket: UdpSocket, names: Arc<ArcSwap<Names>>, upstream: Option<SocketAddr>) {
    let socket = Arc::new(socket);
    let mut buffer = vec![0u8; MAX_MESSAGE];
    loop {
        let (length, client) = match socket.recv_from(&mut buffer).await {
            Ok(received) => received,
            Err(error) => {
                tracing::warn!(%error, "DNS proxy cannot receive");
                continue;
            }
        };
        let query = &buffer[..length];
        match reply(query, &names.load(), upstream.is_some()) {
            Reply::Answer(bytes) => {
                let _ = socket.send_to(&bytes, client).await;
            }
            Reply::Forward => {
                if let Some(upstream) = upstream {
                    tokio::spawn(forward(socket.clone(), query.to_vec(), client, upstream));
                }
            }
            Reply::Drop => {}
        }
    }
}

/// Relays one query to the upstream resolver and its answer back to the client.
async fn forward(socket: Arc<UdpSocket>, query: Vec<u8>, client: SocketAddr, upstream: SocketAddr) {
    let local: SocketAddr = if upstream.is_ipv4() {
        SocketAddr::from(([0, 0, 0, 0], 0))
    } else {
        SocketAddr::from(([0u16; 8], 0))
    };
    let exchange = async {
        let relay = UdpSocket::bind(local).await?;
        relay.connect(upstream).await?;
        relay.send(&query).await?;
        let mut answer = vec![0u8; MAX_MESSAGE];
        let length = relay.recv(&mut answer).await?;
        answer.truncate(length);
        Ok::<_, std::io::Error>(answer)
    };
    match tokio::time::timeout(UPSTREAM_TIMEOUT, exchange).await {
        Ok(Ok(answer)) => {
            let _ = socket.send_to(&answer, client).await;
        }
        Ok(Err(error)) => tracing::debug!(%error, %upstream, "upstream DNS failed"),
        Err(_) => tracing::debug!(%upstream, "upstream DNS timed out"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bosun_xds::istio::NameInfo;
    use hickory_proto::op::Query;
    use hickory_proto::rr::Name;

    fn names() -> Names {
        Names::from_table(&NameTable {
            table: [(
                "reviews.default.svc.cluster.local".to_owned(),
                NameInfo {
                    ips: vec!["10.96.0.7".to_owned()],
                    registry: "Kubernetes".to_owned(),
                    shortname: "reviews".to_owned(),
                    namespace: "default".to_owned(),
                    alt_hosts: vec!["reviews".to_owned(), "reviews.default".to_owned()],
                },
            )]
            .into(),
        })
    }

    fn query(name: &str, kind: RecordType) -> Vec<u8> {
        let mut message = Message::query();
        message.metadata.recursion_desired = true;
        message.add_query(Query::query(Name::from_ascii(name).unwrap(), kind));
        message.to_vec().unwrap()
    }

    fn answer(reply: Reply) -> Message {
        let Reply::Answer(bytes) = reply else {
            panic!("an answer: {reply:?}")
        };
        Message::from_vec(&bytes).unwrap()
    }

    #[test]
    fn mesh_names_and_their_aliases_resolve_to_the_service_address() {
        let names = names();
        for name in [
            "reviews.default.svc.cluster.local.",
            "Reviews.",
            "reviews.default",
        ] {
            let request = query(name, RecordType::A);
            let message = answer(reply(&request, &names, false));
            assert_eq!(
                message.metadata.response_code,
                ResponseCode::NoError,
                "{name}"
            );
            assert!(message.metadata.authoritative);
            assert_eq!(
                message.metadata.id,
                Message::from_vec(&request).unwrap().metadata.id
            );
            let ips: Vec<RData> = message.answers.iter().map(|r| r.data.clone()).collect();
            assert_eq!(ips, vec![RData::A(A([10, 96, 0, 7].into()))], "{name}");
            assert_eq!(message.answers[0].ttl, TTL);
        }
        // IPv6: the name exists, with no address of that family.
        let message = answer(reply(&query("reviews.", RecordType::AAAA), &names, false));
        assert_eq!(message.metadata.response_code, ResponseCode::NoError);
        assert!(message.answers.is_empty());
    }

    #[test]
    fn other_names_are_forwarded_or_unknown() {
        let names = names();
        let request = query("example.com.", RecordType::A);
        assert_eq!(reply(&request, &names, true), Reply::Forward);
        let message = answer(reply(&request, &names, false));
        assert_eq!(message.metadata.response_code, ResponseCode::NXDomain);
        // A search-domain candidate that is not a mesh name.
        let message = answer(reply(
            &query("reviews.default.default.svc.cluster.local.", RecordType::A),
            &names,
            false,
        ));
        assert_eq!(message.metadata.response_code, ResponseCode::NXDomain);
        assert_eq!(reply(b"not dns", &names, false), Reply::Drop);
    }

    #[tokio::test]
    async fn serves_over_udp_and_follows_table_updates() {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let address = socket.local_addr().unwrap();
        let table = Arc::new(ArcSwap::from_pointee(Names::default()));
        let server = tokio::spawn(serve(socket, table.clone(), None));
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let ask = || async {
            client
                .send_to(&query("reviews.", RecordType::A), address)
                .await
                .unwrap();
            let mut buffer = vec![0u8; 512];
            let (n, _) =
                tokio::time::timeout(Duration::from_secs(5), client.recv_from(&mut buffer))
                    .await
                    .unwrap()
                    .unwrap();
            Message::from_vec(&buffer[..n]).unwrap()
        };
        assert_eq!(ask().await.metadata.response_code, ResponseCode::NXDomain);
        table.store(Arc::new(names()));
        assert_eq!(ask().await.answers.len(), 1);
        server.abort();
    }
}
