//! From workload YAML to pods: every Deployment replica (and every bare Pod) becomes a pod
//! with its own loopback address, its containers as local programs — Bosun's built-in sample
//! apps for Istio's sample images, the container's `command`/`args` for anything else.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::net::Ipv4Addr;

use bosun_api::Resource;
use k8s_openapi::api::core::v1 as core;

/// The namespace and labels of the ingress gateway, as Istio installs it.
pub const GATEWAY_NAMESPACE: &str = "istio-system";
/// The gateway's Service and Deployment name.
pub const GATEWAY_NAME: &str = "istio-ingressgateway";

/// A workload the runtime cannot run.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// An image Bosun has no sample for, and no command to run instead.
    #[error(
        "{kind} {namespace}/{owner}: container {container:?} runs image {image:?}, which is not one of Istio's samples Bosun provides; give the container a `command` to run it as a local process"
    )]
    UnknownImage {
        /// `Deployment` or `Pod`.
        kind: &'static str,
        /// The Deployment's or the Pod's name.
        owner: String,
        /// Its namespace.
        namespace: String,
        /// The container.
        container: String,
        /// The image.
        image: String,
    },
    /// More pods than addresses.
    #[error("no loopback addresses left for pod {0}")]
    OutOfAddresses(String),
}

/// What a container runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Program {
    /// `bosun sample <args>`.
    Sample(Vec<String>),
    /// A command line.
    Command(Vec<String>),
}

/// One container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerPlan {
    /// Its name.
    pub name: String,
    /// What it runs.
    pub program: Program,
    /// Its environment (before the runtime adds the mesh's).
    pub env: Vec<(String, String)>,
    /// The ports it listens on.
    pub ports: Vec<u16>,
}

/// One pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodPlan {
    /// Its name (`<deployment>-<hash>-<n>`).
    pub name: String,
    /// Its namespace.
    pub namespace: String,
    /// The Deployment it belongs to (or its own name).
    pub owner: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its service account.
    pub service_account: String,
    /// The pod's address: where its sidecar listens.
    pub ip: Ipv4Addr,
    /// Where its application listens.
    pub app_ip: Ipv4Addr,
    /// Its containers.
    pub containers: Vec<ContainerPlan>,
    /// Named container ports, for Services' named target ports.
    pub named_ports: Vec<(String, u16)>,
}

impl PodPlan {
    /// The Pod as the store keeps it (what a kubelet reports), ready or not.
    pub fn pod_yaml(&self, ready: bool) -> String {
        let labels: Vec<String> = self
            .labels
            .iter()
            .map(|(k, v)| format!("{}: {}", json(k), json(v)))
            .collect();
        let mut containers = String::new();
        for container in &self.containers {
            containers.push_str(&format!(
                "  - name: {}\n    image: bosun\n",
                json(&container.name)
            ));
        }
        if self.containers.is_empty() {
            containers.push_str("  - name: proxy\n    image: bosun\n");
        }
        if !self.named_ports.is_empty() {
            containers.push_str("    ports:\n");
            for (name, port) in &self.named_ports {
                containers.push_str(&format!(
                    "    - {{name: {}, containerPort: {port}}}\n",
                    json(name)
                ));
            }
        }
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {}\n  namespace: {}\n  labels: {{{}}}\nspec:\n  serviceAccountName: {}\n  containers:\n{containers}status:\n  phase: Running\n  podIP: {}\n  conditions:\n  - {{type: Ready, status: \"{}\"}}\n",
            json(&self.name),
            json(&self.namespace),
            labels.join(", "),
            json(&self.service_account),
            self.ip,
            if ready { "True" } else { "False" }
        )
    }
}

fn json(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_default()
}

/// Hands out pod addresses from a /24, from `.10` up.
#[derive(Clone, Debug)]
pub struct AddressPool {
    network: [u8; 3],
    next: u8,
    own_namespaces: bool,
}

impl AddressPool {
    /// Pods on loopback, in 127.`a`.`b`.0/24, their apps on the same host number in the next
    /// /24 (so that a pod's sidecar and its app can both listen on the app's port).
    pub fn loopback(a: u8, b: u8) -> Self {
        AddressPool {
            network: [127, a, b],
            next: 10,
            own_namespaces: false,
        }
    }

    /// Pods in network namespaces of their own, in `network`/24: an app listens on every
    /// address of its namespace, as in a container.
    pub fn namespaced(network: Ipv4Addr) -> Self {
        let [a, b, c, _] = network.octets();
        AddressPool {
            network: [a, b, c],
            next: 10,
            own_namespaces: true,
        }
    }

    /// The next pod address and the address its app listens on.
    pub fn allocate(&mut self, pod: &str) -> Result<(Ipv4Addr, Ipv4Addr), PlanError> {
        if self.next == 255 {
            return Err(PlanError::OutOfAddresses(pod.to_owned()));
        }
        let n = self.next;
        self.next += 1;
        let [a, b, c] = self.network;
        let app = if self.own_namespaces {
            Ipv4Addr::UNSPECIFIED
        } else {
            Ipv4Addr::new(a, b, c.wrapping_add(1), n)
        };
        Ok((Ipv4Addr::new(a, b, c, n), app))
    }
}

/// A stable five-character suffix, as Kubernetes gives pods of a ReplicaSet.
fn suffix(name: &str) -> String {
    let mut hasher = std::hash::DefaultHasher::new();
    name.hash(&mut hasher);
    let alphabet = b"bcdfghjklmnpqrstvwxz2456789";
    let mut value = hasher.finish();
    (0..5)
        .map(|_| {
            let c = alphabet[(value % alphabet.len() as u64) as usize] as char;
            value /= alphabet.len() as u64;
            c
        })
        .collect()
}

fn env_of(
    container: &core::Container,
    pod_name: &str,
    namespace: &str,
    ip: Ipv4Addr,
) -> Vec<(String, String)> {
    container
        .env
        .iter()
        .flatten()
        .filter_map(|e| {
            let value = match (&e.value, &e.value_from) {
                (Some(v), _) => v.clone(),
                (None, Some(from)) => {
                    match from.field_ref.as_ref().map(|f| f.field_path.as_str()) {
                        Some("metadata.name") => pod_name.to_owned(),
                        Some("metadata.namespace") => namespace.to_owned(),
                        Some("status.podIP") => ip.to_string(),
                        _ => return None,
                    }
                }
                (None, None) => String::new(),
            };
            Some((e.name.clone(), value))
        })
        .collect()
}

/// What a pod is planned from: a Deployment, or a Pod of its own.
#[derive(Clone, Copy, Debug)]
struct Owner<'a> {
    kind: &'static str,
    name: &'a str,
}

fn container_plan(
    container: &core::Container,
    owner: Owner<'_>,
    namespace: &str,
    pod_name: &str,
    ip: Ipv4Addr,
    app_ip: Ipv4Addr,
) -> Result<ContainerPlan, PlanError> {
    let ports: Vec<u16> = container
        .ports
        .iter()
        .flatten()
        .filter_map(|p| u16::try_from(p.container_port).ok())
        .collect();
    let image = container.image.clone().unwrap_or_default();
    let args: Vec<String> = container.args.clone().unwrap_or_default();
    let program = match bosun_samples::cli::sample_args_for_image(&image) {
        Some(sample) => {
            let mut sample: Vec<String> = sample.into_iter().map(str::to_owned).collect();
            // Listen on the pod's app address, on the container's port.
            let preset_port = sample.iter().position(|a| a == "--listen").and_then(|i| {
                let port = sample.get(i + 1)?.rsplit_once(':')?.1.parse::<u16>().ok();
                sample.drain(i..=i + 1);
                port
            });
            if sample[0] == "tcp-echo" {
                sample.extend(["--listen".to_owned(), app_ip.to_string()]);
            } else {
                let port = ports.first().copied().or(preset_port).unwrap_or(9080);
                sample.extend(["--listen".to_owned(), format!("{app_ip}:{port}")]);
            }
            sample.extend(args);
            Program::Sample(sample)
        }
        None => match &container.command {
            Some(command) if !command.is_empty() => {
                let mut argv = command.clone();
                argv.extend(args);
                Program::Command(argv)
            }
            _ => {
                return Err(PlanError::UnknownImage {
                    kind: owner.kind,
                    owner: owner.name.to_owned(),
                    namespace: namespace.to_owned(),
                    container: container.name.clone(),
                    image,
                });
            }
        },
    };
    Ok(ContainerPlan {
        name: container.name.clone(),
        program,
        env: env_of(container, pod_name, namespace, ip),
        ports,
    })
}

fn pod_plan(
    owner: Owner<'_>,
    name: String,
    namespace: &str,
    template_labels: BTreeMap<String, String>,
    spec: Option<&core::PodSpec>,
    addresses: &mut AddressPool,
) -> Result<PodPlan, PlanError> {
    let (ip, app_ip) = addresses.allocate(&name)?;
    let mut containers = Vec::new();
    let mut named_ports = Vec::new();
    for container in spec.into_iter().flat_map(|s| s.containers.iter()) {
        containers.push(container_plan(
            container, owner, namespace, &name, ip, app_ip,
        )?);
        for port in container.ports.iter().flatten() {
            if let (Some(port_name), Ok(number)) = (&port.name, u16::try_from(port.container_port))
            {
                named_ports.push((port_name.clone(), number));
            }
        }
    }
    Ok(PodPlan {
        name,
        namespace: namespace.to_owned(),
        owner: owner.name.to_owned(),
        labels: template_labels,
        service_account: spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_else(|| "default".to_owned()),
        ip,
        app_ip,
        containers,
        named_ports,
    })
}

/// The pods of the Deployments and Pods among `resources`.
pub fn plan(
    resources: &[Resource],
    addresses: &mut AddressPool,
) -> Result<Vec<PodPlan>, PlanError> {
    let mut pods = Vec::new();
    for resource in resources {
        let namespace = resource.namespace().unwrap_or("default").to_owned();
        match resource {
            Resource::Deployment(deployment) => {
                let name = deployment.metadata.name.clone().unwrap_or_default();
                let spec = deployment.spec.as_ref();
                let replicas = spec.and_then(|s| s.replicas).unwrap_or(1).max(0);
                let template = spec.map(|s| &s.template);
                let labels = template
                    .and_then(|t| t.metadata.as_ref())
                    .and_then(|m| m.labels.clone())
                    .unwrap_or_default();
                let hash = suffix(&format!("{namespace}/{name}"));
                for replica in 0..replicas {
                    let pod_name = format!("{name}-{hash}-{replica}");
                    pods.push(pod_plan(
                        Owner {
                            kind: "Deployment",
                            name: &name,
                        },
                        pod_name,
                        &namespace,
                        labels.clone(),
                        template.and_then(|t| t.spec.as_ref()),
                        &mut *addresses,
                    )?);
                }
            }
            Resource::Pod(pod)
                if pod
                    .status
                    .as_ref()
                    .and_then(|s| s.pod_ip.as_ref())
                    .is_none() =>
            {
                let name = pod.metadata.name.clone().unwrap_or_default();
                pods.push(pod_plan(
                    Owner {
                        kind: "Pod",
                        name: &name,
                    },
                    name.clone(),
                    &namespace,
                    pod.metadata.labels.clone().unwrap_or_default(),
                    pod.spec.as_ref(),
                    &mut *addresses,
                )?);
            }
            _ => {}
        }
    }
    Ok(pods)
}

/// The ingress gateway's Service: 80 and 8080 to `port`, 443 to 8443, as Istio's is
/// (80→8080), with the gateway's own listener on the port the user asked for.
pub fn gateway_service_yaml(port: u16) -> String {
    format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {GATEWAY_NAMESPACE}}}\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: {GATEWAY_NAME}\n  namespace: {GATEWAY_NAMESPACE}\n  labels: {{app: {GATEWAY_NAME}, istio: ingressgateway}}\nspec:\n  selector: {{istio: ingressgateway}}\n  ports:\n  - {{name: http2, port: 80, targetPort: {port}}}\n  - {{name: http-alt, port: 8080, targetPort: {port}}}\n  - {{name: https, port: 443, targetPort: 8443}}\n"
    )
}

/// The ingress gateway's pod: a router proxy, no containers of its own.
pub fn gateway_pod(ip: Ipv4Addr) -> PodPlan {
    PodPlan {
        name: format!("{GATEWAY_NAME}-{}-0", suffix(GATEWAY_NAME)),
        namespace: GATEWAY_NAMESPACE.to_owned(),
        owner: GATEWAY_NAME.to_owned(),
        labels: BTreeMap::from([
            ("app".to_owned(), GATEWAY_NAME.to_owned()),
            ("istio".to_owned(), "ingressgateway".to_owned()),
        ]),
        service_account: format!("{GATEWAY_NAME}-service-account"),
        ip,
        app_ip: ip,
        containers: Vec::new(),
        named_ports: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bosun_api::load::{Source, load_sources};

    fn resources(text: &str) -> Vec<Resource> {
        let result = load_sources(&[Source::new("t.yaml", text)]);
        assert!(result.problems.is_empty(), "{:?}", result.problems);
        result.loaded.into_iter().map(|l| l.resource).collect()
    }

    #[test]
    fn bookinfo_becomes_six_pods_of_sample_apps() {
        let path = bosun_api::testing::istio_path("samples/bookinfo/platform/kube/bookinfo.yaml");
        let text = std::fs::read_to_string(path).unwrap();
        let pods = plan(&resources(&text), &mut AddressPool::loopback(10, 0)).unwrap();
        assert_eq!(pods.len(), 6);
        let reviews = pods
            .iter()
            .find(|p| p.name.starts_with("reviews-v2-"))
            .unwrap();
        assert_eq!(reviews.labels["version"], "v2");
        assert_eq!(reviews.service_account, "bookinfo-reviews");
        assert_eq!(reviews.ip, Ipv4Addr::new(127, 10, 0, 13));
        assert_eq!(reviews.app_ip, Ipv4Addr::new(127, 10, 1, 13));
        let Program::Sample(args) = &reviews.containers[0].program else {
            panic!("a sample")
        };
        assert_eq!(
            args,
            &[
                "reviews",
                "--service-version",
                "v2",
                "--listen",
                "127.10.1.13:9080"
            ]
        );
        assert!(
            reviews.containers[0]
                .env
                .iter()
                .any(|(k, _)| k == "LOG_DIR"),
            "the container's own environment is kept"
        );
        // Stable names, as a ReplicaSet's.
        let again = plan(&resources(&text), &mut AddressPool::loopback(10, 0)).unwrap();
        assert_eq!(pods[0].name, again[0].name);
    }

    #[test]
    fn other_images_run_their_command_or_are_refused() {
        let deployment = |image: &str, command: &str| {
            format!(
                "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: web, namespace: shop}}\nspec:\n  replicas: 2\n  selector: {{matchLabels: {{app: web}}}}\n  template:\n    metadata: {{labels: {{app: web}}}}\n    spec:\n      containers:\n      - name: main\n        image: {image}\n{command}        env:\n        - {{name: POD, valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}}}\n"
            )
        };
        let text = deployment(
            "nginx:1.27",
            "        command: [python3, -m, http.server]\n        args: ['8000']\n",
        );
        let pods = plan(&resources(&text), &mut AddressPool::loopback(10, 0)).unwrap();
        assert_eq!(pods.len(), 2);
        assert_eq!(
            pods[0].containers[0].program,
            Program::Command(vec![
                "python3".into(),
                "-m".into(),
                "http.server".into(),
                "8000".into()
            ])
        );
        assert_eq!(
            pods[1].containers[0].env,
            vec![("POD".to_owned(), pods[1].name.clone())]
        );
        let error = plan(
            &resources(&deployment("nginx:1.27", "")),
            &mut AddressPool::loopback(10, 0),
        )
        .unwrap_err();
        let message = error.to_string();
        assert!(
            message.contains("Deployment shop/web") && message.contains("nginx:1.27"),
            "{message}"
        );
        let pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: lone, namespace: shop}\nspec: {containers: [{name: main, image: 'nginx:1.27'}]}\n";
        let message = plan(&resources(pod), &mut AddressPool::loopback(10, 0))
            .unwrap_err()
            .to_string();
        assert!(message.starts_with("Pod shop/lone: "), "{message}");
    }

    #[test]
    fn the_pod_yaml_is_valid_and_carries_readiness() {
        let pod = gateway_pod(Ipv4Addr::LOCALHOST);
        let loaded = resources(&pod.pod_yaml(false));
        let Resource::Pod(stored) = &loaded[0] else {
            panic!()
        };
        let status = stored.status.as_ref().unwrap();
        assert_eq!(status.pod_ip.as_deref(), Some("127.0.0.1"));
        assert_eq!(status.conditions.as_ref().unwrap()[0].status, "False");
        resources(&gateway_service_yaml(8080));
    }
}
