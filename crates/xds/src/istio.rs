//! Istio's own xDS types, which Envoy does not have: the name table (NDS) that istiod sends
//! the agent beside each proxy, whose DNS proxy answers from it. Field numbers and names are
//! Istio's (`istio.networking.nds.v1`), so the bytes are the same on the wire.

/// `istio.networking.nds.v1.NameTable`: the host names a proxy's workload may resolve.
#[derive(Clone, PartialEq, prost::Message)]
pub struct NameTable {
    /// By host name (`reviews.default.svc.cluster.local`, `api.example.com`).
    #[prost(btree_map = "string, message", tag = "1")]
    pub table: std::collections::BTreeMap<String, NameInfo>,
}

/// `istio.networking.nds.v1.NameTable.NameInfo`: the addresses of one host.
#[derive(Clone, PartialEq, prost::Message)]
pub struct NameInfo {
    /// Its addresses (a service's VIPs, or a headless service's endpoints).
    #[prost(string, repeated, tag = "1")]
    pub ips: Vec<String>,
    /// `Kubernetes` or `External`.
    #[prost(string, tag = "2")]
    pub registry: String,
    /// The Service's name, for Kubernetes services.
    #[prost(string, tag = "3")]
    pub shortname: String,
    /// The Service's namespace, for Kubernetes services.
    #[prost(string, tag = "4")]
    pub namespace: String,
    /// The other names a client of this proxy's namespace may use for it (`reviews`,
    /// `reviews.default`, `reviews.default.svc`).
    #[prost(string, repeated, tag = "5")]
    pub alt_hosts: Vec<String>,
}

impl prost::Name for NameTable {
    const NAME: &'static str = "NameTable";
    const PACKAGE: &'static str = "istio.networking.nds.v1";

    fn type_url() -> String {
        crate::TypeUrl::NAME_TABLE.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::{Message as _, Name as _};

    #[test]
    fn encodes_as_istio_does() {
        let table = NameTable {
            table: [(
                "a.b".to_owned(),
                NameInfo {
                    ips: vec!["10.0.0.1".to_owned()],
                    ..Default::default()
                },
            )]
            .into(),
        };
        // Field 1 (map entry: key 1, value 2 with its field 1), as protoc encodes it.
        let bytes = table.encode_to_vec();
        assert_eq!(
            bytes,
            [
                0x0a, 0x11, 0x0a, 0x03, b'a', b'.', b'b', 0x12, 0x0a, 0x0a, 0x08, b'1', b'0', b'.',
                b'0', b'.', b'0', b'.', b'1'
            ]
        );
        assert_eq!(NameTable::decode(bytes.as_slice()).unwrap(), table);
        assert_eq!(
            NameTable::type_url(),
            "type.googleapis.com/istio.networking.nds.v1.NameTable"
        );
    }
}
