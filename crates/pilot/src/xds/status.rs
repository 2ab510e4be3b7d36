//! What each connected proxy was sent and what it answered: `proxy-status`, `/debug/syncz`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use crate::node::ProxyNode;
use crate::translate::{PUSH_ORDER, ProxyResources, short_type_name};

/// Where a proxy stands for one resource type, as `istioctl proxy-status` says it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum SyncState {
    /// The last response was acknowledged.
    #[serde(rename = "SYNCED")]
    Synced,
    /// Nothing was sent (the proxy never asked).
    #[serde(rename = "NOT SENT")]
    NotSent,
    /// A response awaits its acknowledgement.
    #[serde(rename = "STALE")]
    Stale,
    /// The last response was rejected; the proxy keeps its previous configuration.
    #[serde(rename = "NACKED")]
    Nacked,
}

impl SyncState {
    /// As printed.
    pub fn as_str(self) -> &'static str {
        match self {
            SyncState::Synced => "SYNCED",
            SyncState::NotSent => "NOT SENT",
            SyncState::Stale => "STALE",
            SyncState::Nacked => "NACKED",
        }
    }
}

/// One type's exchange with a proxy.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct TypeStatus {
    /// Nonce of the last response sent.
    pub sent_nonce: Option<String>,
    /// Version of the last response sent.
    pub sent_version: Option<String>,
    /// Nonce of the last response acknowledged.
    pub acked_nonce: Option<String>,
    /// Whether the last reply to the last response was a NACK.
    pub nacked: bool,
    /// The last NACK's reason, kept after later ACKs for the record.
    pub last_nack: Option<String>,
}

impl TypeStatus {
    /// The state.
    pub fn state(&self) -> SyncState {
        match (&self.sent_nonce, &self.acked_nonce) {
            (None, _) => SyncState::NotSent,
            (Some(_), _) if self.nacked => SyncState::Nacked,
            (Some(sent), Some(acked)) if sent == acked => SyncState::Synced,
            _ => SyncState::Stale,
        }
    }
}

/// One connected proxy.
#[derive(Clone, Debug)]
pub struct ConnectionStatus {
    /// The connection's number.
    pub id: u64,
    /// Who it is.
    pub node: ProxyNode,
    /// Whether it speaks delta xDS.
    pub delta: bool,
    /// When it connected.
    pub connected_at: SystemTime,
    /// Per type URL.
    pub types: BTreeMap<String, TypeStatus>,
    /// What pilot generated for it last.
    pub resources: Arc<ProxyResources>,
    /// The store revision `resources` were generated from: once every type is synced, the
    /// proxy holds the config of that revision.
    pub revision: u64,
}

impl ConnectionStatus {
    /// The state of one type.
    pub fn state(&self, type_url: &str) -> SyncState {
        self.types
            .get(type_url)
            .map_or(SyncState::NotSent, TypeStatus::state)
    }

    /// As `/debug/syncz` shows it.
    pub fn to_json(&self) -> serde_json::Value {
        let mut object = serde_json::json!({
            "proxy": self.node.name(),
            "id": self.node.id,
            "proxy_type": self.node.proxy_type.as_str(),
            "cluster_id": self.node.cluster_id,
            "namespace": self.node.namespace,
            "delta": self.delta,
            "istio_version": env!("CARGO_PKG_VERSION"),
            "revision": self.revision,
        });
        for type_url in PUSH_ORDER {
            let status = self.types.get(type_url).cloned().unwrap_or_default();
            let short = short_type_name(type_url).to_ascii_lowercase();
            object[format!("{short}_state")] = status.state().as_str().into();
            object[format!("{short}_sent")] = status.sent_nonce.clone().unwrap_or_default().into();
            object[format!("{short}_acked")] =
                status.acked_nonce.clone().unwrap_or_default().into();
            if let Some(error) = &status.last_nack {
                // The current rejection, and the last one for the record.
                if status.nacked {
                    object[format!("{short}_nack")] = error.clone().into();
                }
                object[format!("{short}_last_nack")] = error.clone().into();
            }
        }
        object
    }
}

/// Every connected proxy.
#[derive(Debug, Default)]
pub struct SyncRegistry {
    connections: Mutex<BTreeMap<u64, ConnectionStatus>>,
}

impl SyncRegistry {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<u64, ConnectionStatus>> {
        self.connections.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn connect(
        &self,
        id: u64,
        node: ProxyNode,
        delta: bool,
        resources: Arc<ProxyResources>,
        revision: u64,
    ) {
        self.lock().insert(
            id,
            ConnectionStatus {
                id,
                node,
                delta,
                connected_at: SystemTime::now(),
                types: BTreeMap::new(),
                resources,
                revision,
            },
        );
    }

    pub(crate) fn disconnect(&self, id: u64) {
        self.lock().remove(&id);
    }

    pub(crate) fn update_resources(&self, id: u64, resources: Arc<ProxyResources>, revision: u64) {
        if let Some(connection) = self.lock().get_mut(&id) {
            connection.resources = resources;
            connection.revision = revision;
        }
    }

    pub(crate) fn sent(&self, id: u64, type_url: &str, nonce: &str, version: &str) {
        if let Some(connection) = self.lock().get_mut(&id) {
            let status = connection.types.entry(type_url.to_owned()).or_default();
            status.sent_nonce = Some(nonce.to_owned());
            status.sent_version = Some(version.to_owned());
            status.nacked = false;
        }
    }

    pub(crate) fn reply(&self, id: u64, type_url: &str, nonce: &str, error: Option<String>) {
        if let Some(connection) = self.lock().get_mut(&id) {
            let status = connection.types.entry(type_url.to_owned()).or_default();
            match error {
                Some(error) => {
                    status.nacked = status.sent_nonce.as_deref() == Some(nonce);
                    status.last_nack = Some(error);
                }
                None => {
                    status.acked_nonce = Some(nonce.to_owned());
                    status.nacked = false;
                }
            }
        }
    }

    /// Every connection, by proxy name.
    pub fn connections(&self) -> Vec<ConnectionStatus> {
        let mut all: Vec<ConnectionStatus> = self.lock().values().cloned().collect();
        all.sort_by_key(|c| (c.node.name(), c.id));
        all
    }

    /// The newest connection of a proxy named `<pod>.<namespace>` (or by node id).
    pub fn find(&self, proxy: &str) -> Option<ConnectionStatus> {
        self.lock()
            .values()
            .filter(|c| c.node.name() == proxy || c.node.id == proxy || c.node.pod_name == proxy)
            .max_by_key(|c| c.id)
            .cloned()
    }
}
