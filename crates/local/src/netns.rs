//! Pods in network namespaces, for a mesh started as root: a bridge on the host, a veth pair
//! and a network namespace per pod, inside it the NAT rules istio-init writes (every TCP
//! connection redirected to the sidecar, 15001 out and 15006 in, the sidecar's own traffic
//! excluded by its uid) and DNS sent to the sidecar's DNS proxy, with a `resolv.conf` that
//! searches the pod's namespace as a kubelet writes it.
//!
//! Everything is done with iproute2 and iptables, as an administrator would type it; what
//! this module creates it also removes.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Stdio;

use tokio::io::AsyncWriteExt as _;
use tokio::process::Command;

/// The uid (and gid) the sidecar runs as, as Istio's proxy image runs it: iptables lets its
/// traffic through unredirected.
pub const PROXY_UID: u32 = 1337;
/// The outbound capture port (`virtualOutbound`).
pub const OUTBOUND_CAPTURE_PORT: u16 = 15001;
/// The inbound capture port (`virtualInbound`).
pub const INBOUND_CAPTURE_PORT: u16 = 15006;
/// The sidecar's DNS proxy port.
pub const DNS_PORT: u16 = 15053;
/// The cluster DNS address written in `resolv.conf` (kube-dns's usual address); what is sent
/// there is redirected to the sidecar.
pub const CLUSTER_DNS: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
/// Ports of the sidecar itself that inbound capture leaves alone: admin, HBONE, status,
/// Prometheus.
const EXCLUDED_INBOUND_PORTS: [u16; 5] = [15000, 15008, 15020, 15021, 15090];

/// A failed network command.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    /// A command could not run or failed.
    #[error("{command}: {message}")]
    Command {
        /// The command line.
        command: String,
        /// Its error output, or why it could not start.
        message: String,
    },
    /// A file of the namespace could not be written.
    #[error("writing {path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

async fn run(program: &str, args: &[&str], input: Option<&str>) -> Result<(), NetnsError> {
    let command_line = format!("{program} {}", args.join(" "));
    let failed = |message: String| NetnsError::Command {
        command: command_line.clone(),
        message,
    };
    let mut child = Command::new(program)
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| failed(e.to_string()))?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin
            .write_all(text.as_bytes())
            .await
            .map_err(|e| failed(e.to_string()))?;
    }
    let output = child
        .wait_with_output()
        .await
        .map_err(|e| failed(e.to_string()))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(failed(
            String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        ))
    }
}

async fn ip(args: &[&str]) -> Result<(), NetnsError> {
    run("ip", args, None).await
}

/// Whether this process may create network namespaces (it runs as root).
pub fn available() -> bool {
    nix::unistd::geteuid().is_root()
}

/// The host side: a bridge with the first address of the pods' /24.
#[derive(Debug, Clone)]
pub struct PodNetwork {
    bridge: String,
    gateway: Ipv4Addr,
}

impl PodNetwork {
    /// Creates the bridge for pods in `network`/24 (its `.1` is the host's address).
    pub async fn create(network: Ipv4Addr) -> Result<PodNetwork, NetnsError> {
        let [a, b, c, _] = network.octets();
        let network = PodNetwork {
            bridge: format!("bsn{b}-{c}"),
            gateway: Ipv4Addr::new(a, b, c, 1),
        };
        // A bridge left by a mesh that did not stop cleanly goes first.
        let _ = ip(&["link", "del", &network.bridge]).await;
        ip(&["link", "add", "name", &network.bridge, "type", "bridge"]).await?;
        ip(&[
            "addr",
            "add",
            &format!("{}/24", network.gateway),
            "dev",
            &network.bridge,
        ])
        .await?;
        ip(&["link", "set", &network.bridge, "up"]).await?;
        Ok(network)
    }

    /// The host's address on the bridge: where pods reach pilot.
    pub fn host_address(&self) -> Ipv4Addr {
        self.gateway
    }

    /// Creates the namespace of the pod at `address`, wired to the bridge, with capture rules
    /// and DNS settings for a pod of `namespace`.
    pub async fn add_pod(
        &self,
        address: Ipv4Addr,
        pod_name: &str,
        namespace: &str,
    ) -> Result<PodNamespace, NetnsError> {
        let [_, b, c, d] = address.octets();
        let pod = PodNamespace {
            name: format!("bosun-{b}-{c}-{d}"),
            veth: format!("vb{b}-{c}-{d}"),
        };
        let _ = pod.remove().await;
        ip(&["netns", "add", &pod.name]).await?;
        ip(&[
            "link", "add", &pod.veth, "type", "veth", "peer", "name", "eth0", "netns", &pod.name,
        ])
        .await?;
        ip(&["link", "set", &pod.veth, "master", &self.bridge, "up"]).await?;
        let inside = |args: &[&str]| {
            let mut all = vec!["-n", pod.name.as_str()];
            all.extend_from_slice(args);
            all.into_iter().map(str::to_owned).collect::<Vec<String>>()
        };
        for args in [
            inside(&["link", "set", "lo", "up"]),
            inside(&["addr", "add", &format!("{address}/24"), "dev", "eth0"]),
            inside(&["link", "set", "eth0", "up"]),
            inside(&["route", "add", "default", "via", &self.gateway.to_string()]),
        ] {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            ip(&args).await?;
        }
        run(
            "ip",
            &["netns", "exec", &pod.name, "iptables-restore"],
            Some(&capture_rules()),
        )
        .await?;
        pod.write_files(address, pod_name, namespace)?;
        Ok(pod)
    }

    /// Removes the bridge.
    pub async fn remove(&self) {
        let _ = ip(&["link", "del", &self.bridge]).await;
    }
}

/// istio-init's NAT rules (`istio-iptables` with its defaults: all inbound ports but the
/// sidecar's own, all outbound, the proxy's uid and gid excluded), plus DNS capture.
pub fn capture_rules() -> String {
    let mut rules = String::from(
        "*nat\n:ISTIO_INBOUND - [0:0]\n:ISTIO_IN_REDIRECT - [0:0]\n:ISTIO_OUTPUT - [0:0]\n:ISTIO_REDIRECT - [0:0]\n-A PREROUTING -p tcp -j ISTIO_INBOUND\n-A OUTPUT -p tcp -j ISTIO_OUTPUT\n",
    );
    for port in EXCLUDED_INBOUND_PORTS {
        rules.push_str(&format!(
            "-A ISTIO_INBOUND -p tcp --dport {port} -j RETURN\n"
        ));
    }
    let uid = PROXY_UID;
    rules.push_str(&format!(
        "-A ISTIO_INBOUND -p tcp -j ISTIO_IN_REDIRECT\n\
         -A ISTIO_IN_REDIRECT -p tcp -j REDIRECT --to-ports {INBOUND_CAPTURE_PORT}\n\
         -A ISTIO_OUTPUT -s 127.0.0.6/32 -o lo -j RETURN\n\
         -A ISTIO_OUTPUT ! -d 127.0.0.1/32 -o lo -m owner --uid-owner {uid} -j ISTIO_IN_REDIRECT\n\
         -A ISTIO_OUTPUT -o lo -m owner ! --uid-owner {uid} -j RETURN\n\
         -A ISTIO_OUTPUT -m owner --uid-owner {uid} -j RETURN\n\
         -A ISTIO_OUTPUT ! -d 127.0.0.1/32 -o lo -m owner --gid-owner {uid} -j ISTIO_IN_REDIRECT\n\
         -A ISTIO_OUTPUT -o lo -m owner ! --gid-owner {uid} -j RETURN\n\
         -A ISTIO_OUTPUT -m owner --gid-owner {uid} -j RETURN\n\
         -A ISTIO_OUTPUT -d 127.0.0.1/32 -j RETURN\n\
         -A ISTIO_OUTPUT -j ISTIO_REDIRECT\n\
         -A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports {OUTBOUND_CAPTURE_PORT}\n\
         -A OUTPUT -p udp --dport 53 -m owner ! --uid-owner {uid} -j REDIRECT --to-ports {DNS_PORT}\n\
         COMMIT\n"
    ));
    rules
}

/// One pod's network namespace.
#[derive(Debug, Clone)]
pub struct PodNamespace {
    name: String,
    veth: String,
}

impl PodNamespace {
    /// The namespace's name (`ip netns`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip netns exec` reads the namespace's own `resolv.conf` and `hosts` from here.
    fn etc_dir(&self) -> PathBuf {
        PathBuf::from("/etc/netns").join(&self.name)
    }

    fn write_files(
        &self,
        address: Ipv4Addr,
        pod_name: &str,
        namespace: &str,
    ) -> Result<(), NetnsError> {
        let dir = self.etc_dir();
        let write = |file: &str, text: String| {
            let path = dir.join(file);
            std::fs::create_dir_all(&dir)
                .and_then(|()| std::fs::write(&path, text))
                .map_err(|source| NetnsError::File { path, source })
        };
        write(
            "resolv.conf",
            format!(
                "# written by bosun: DNS goes to the sidecar's DNS proxy\nnameserver {CLUSTER_DNS}\nsearch {namespace}.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n"
            ),
        )?;
        write(
            "hosts",
            format!("127.0.0.1\tlocalhost\n::1\tlocalhost\n{address}\t{pod_name}\n"),
        )
    }

    /// The command line that runs `program` inside the namespace (with its `resolv.conf`).
    pub fn exec(&self, program: &str) -> (String, Vec<String>) {
        (
            "ip".to_owned(),
            vec![
                "netns".to_owned(),
                "exec".to_owned(),
                self.name.clone(),
                program.to_owned(),
            ],
        )
    }

    /// The command line that runs `program` inside the namespace as the proxy's uid and gid.
    pub fn exec_as_proxy(&self, program: &str) -> (String, Vec<String>) {
        let id = PROXY_UID.to_string();
        (
            "ip".to_owned(),
            vec![
                "netns".to_owned(),
                "exec".to_owned(),
                self.name.clone(),
                "setpriv".to_owned(),
                format!("--reuid={id}"),
                format!("--regid={id}"),
                "--clear-groups".to_owned(),
                "--".to_owned(),
                program.to_owned(),
            ],
        )
    }

    /// Removes the namespace (its veth goes with it) and its files.
    pub async fn remove(&self) -> Result<(), NetnsError> {
        let _ = std::fs::remove_dir_all(self.etc_dir());
        let _ = ip(&["link", "del", &self.veth]).await;
        ip(&["netns", "del", &self.name]).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capture_rules_exclude_the_proxy_and_redirect_the_rest() {
        let rules = capture_rules();
        assert!(rules.starts_with("*nat\n") && rules.ends_with("COMMIT\n"));
        assert!(rules.contains("-A ISTIO_OUTPUT -m owner --uid-owner 1337 -j RETURN"));
        assert!(rules.contains("-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001"));
        assert!(rules.contains("-A ISTIO_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006"));
        assert!(rules.contains("--dport 15021 -j RETURN"));
        assert!(
            rules.contains("--dport 53 -m owner ! --uid-owner 1337 -j REDIRECT --to-ports 15053")
        );
    }
}
