//! Helpers for tests: Istio's sample files, Pods for Deployments as a kubelet would write
//! them, the ingress gateway's Service, proxy identities.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::Ipv4Addr;

use bosun_api::Resource;
use bosun_api::load::{Source, load_sources};

use crate::context::{MeshConfig, PushContext};
use crate::node::{Capture, ProxyNode, ProxyType};
use crate::store::Store;

/// The text of a file under Istio's shared directory (`samples/bookinfo/...`).
pub fn istio_file(relative: &str) -> String {
    let path = bosun_api::testing::istio_path(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A Pod as the local runtime writes it.
#[derive(Clone, Debug)]
pub struct PodSpec {
    /// Its name.
    pub name: String,
    /// Its namespace.
    pub namespace: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its service account.
    pub service_account: String,
    /// Its address.
    pub ip: Ipv4Addr,
}

impl PodSpec {
    /// The Pod's YAML.
    pub fn yaml(&self) -> String {
        let labels: Vec<String> = self
            .labels
            .iter()
            .map(|(k, v)| format!("{k}: \"{v}\""))
            .collect();
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {}\n  namespace: {}\n  labels: {{{}}}\nspec:\n  serviceAccountName: {}\n  containers: [{{name: app, image: bosun}}]\nstatus:\n  phase: Running\n  podIP: {}\n",
            self.name,
            self.namespace,
            labels.join(", "),
            self.service_account,
            self.ip
        )
    }

    /// Its identity as a sidecar.
    pub fn sidecar(&self, capture: Capture) -> ProxyNode {
        ProxyNode {
            id: format!(
                "sidecar~{}~{}.{}~{}.svc.cluster.local",
                self.ip, self.name, self.namespace, self.namespace
            ),
            proxy_type: ProxyType::Sidecar,
            ip_addresses: vec![self.ip.into()],
            pod_name: self.name.clone(),
            namespace: self.namespace.clone(),
            labels: self.labels.clone(),
            service_account: self.service_account.clone(),
            cluster_id: "Kubernetes".to_owned(),
            capture,
        }
    }
}

/// One Pod per Deployment in `yaml` (replica 1), addresses counted up from `first_ip`.
pub fn pods_for_deployments(yaml: &str, first_ip: Ipv4Addr) -> Vec<PodSpec> {
    let result = load_sources(&[Source::new("deployments", yaml)]);
    let mut next = u32::from(first_ip);
    let mut pods = Vec::new();
    for loaded in result.loaded {
        let Resource::Deployment(deployment) = loaded.resource else {
            continue;
        };
        let template = deployment.spec.as_ref().map(|s| &s.template);
        let labels = template
            .and_then(|t| t.metadata.as_ref())
            .and_then(|m| m.labels.clone())
            .unwrap_or_default();
        let service_account = template
            .and_then(|t| t.spec.as_ref())
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_else(|| "default".to_owned());
        let name = deployment.metadata.name.clone().unwrap_or_default();
        pods.push(PodSpec {
            name: format!("{name}-0"),
            namespace: deployment
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| "default".to_owned()),
            labels,
            service_account,
            ip: Ipv4Addr::from(next),
        });
        next += 1;
    }
    pods
}

/// The ingress gateway's Service (80→8080, 443→8443, 31400) and Pod in `istio-system`.
pub fn ingress_gateway(ip: Ipv4Addr) -> (String, PodSpec) {
    let pod = PodSpec {
        name: "istio-ingressgateway-0".to_owned(),
        namespace: "istio-system".to_owned(),
        labels: BTreeMap::from([
            ("istio".to_owned(), "ingressgateway".to_owned()),
            ("app".to_owned(), "istio-ingressgateway".to_owned()),
        ]),
        service_account: "istio-ingressgateway-service-account".to_owned(),
        ip,
    };
    let mut yaml = String::from(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: istio-ingressgateway\n  namespace: istio-system\nspec:\n  selector: {istio: ingressgateway}\n  ports:\n  - {name: http2, port: 80, targetPort: 8080}\n  - {name: https, port: 443, targetPort: 8443}\n  - {name: tcp, port: 31400, targetPort: 31400}\n---\n",
    );
    let _ = write!(yaml, "{}", pod.yaml());
    (yaml, pod)
}

/// Its identity as a router.
pub fn router(pod: &PodSpec, capture: Capture) -> ProxyNode {
    let mut node = pod.sidecar(capture);
    node.proxy_type = ProxyType::Router;
    node.id = node.id.replacen("sidecar~", "router~", 1);
    node
}

/// A store holding every document of `texts` (panics on invalid ones).
pub fn store_of(texts: &[String]) -> Store {
    let store = Store::in_memory();
    let sources: Vec<Source> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| Source::new(format!("input-{i}"), t.clone()))
        .collect();
    if let Err(e) = store.apply_sources(&sources, None) {
        panic!("{e}");
    }
    store
}

/// A push context of `texts`.
pub fn context_of(texts: &[String]) -> PushContext {
    PushContext::build(&store_of(texts).snapshot(), MeshConfig::default())
}
