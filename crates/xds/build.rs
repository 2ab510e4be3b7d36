//! Compiles the Envoy protos that ship inside the `envoy-types` crate into one descriptor set,
//! embedded in the library. It backs the proto3 JSON mapping of bootstraps (prost-reflect) and
//! the checks that refuse configuration the proxy does not implement.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The protos Bosun reads; their imports come along.
const ROOTS: &[&str] = &[
    "envoy/config/bootstrap/v3/bootstrap.proto",
    "envoy/service/discovery/v3/ads.proto",
    "envoy/service/discovery/v3/discovery.proto",
    "envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.proto",
    "envoy/extensions/filters/network/tcp_proxy/v3/tcp_proxy.proto",
    "envoy/extensions/filters/http/router/v3/router.proto",
    "envoy/extensions/filters/http/fault/v3/fault.proto",
    "envoy/extensions/filters/http/cors/v3/cors.proto",
    "envoy/extensions/filters/listener/tls_inspector/v3/tls_inspector.proto",
    "envoy/extensions/filters/listener/http_inspector/v3/http_inspector.proto",
    "envoy/extensions/filters/listener/original_dst/v3/original_dst.proto",
    "envoy/extensions/transport_sockets/tls/v3/tls.proto",
    "envoy/extensions/transport_sockets/tls/v3/secret.proto",
    "envoy/extensions/transport_sockets/raw_buffer/v3/raw_buffer.proto",
    "envoy/extensions/access_loggers/file/v3/file.proto",
    "envoy/extensions/access_loggers/stream/v3/stream.proto",
    "envoy/extensions/upstreams/http/v3/http_protocol_options.proto",
    "envoy/extensions/retry/host/previous_hosts/v3/previous_hosts.proto",
    "envoy/extensions/network/dns_resolver/cares/v3/cares_dns_resolver.proto",
];

/// The directories of `envoy-types`' `proto/` tree that hold import roots.
const INCLUDE_DIRS: &[&str] = &[
    "data-plane-api",
    "xds",
    "protoc-gen-validate",
    "googleapis",
    "cel-spec/proto",
    "opentelemetry-proto",
    "client_model",
];

fn main() {
    let proto_root = envoy_types_proto_dir();
    println!("cargo:rerun-if-changed=build.rs");
    let includes: Vec<PathBuf> = INCLUDE_DIRS.iter().map(|d| proto_root.join(d)).collect();
    let descriptors = match protox::compile(ROOTS, &includes) {
        Ok(set) => set,
        Err(error) => panic!(
            "compiling Envoy protos from {}: {error:?}",
            proto_root.display()
        ),
    };
    let mut descriptors = descriptors;
    // Comments and spans are not needed at run time; dropping them halves the embedded size.
    for file in &mut descriptors.file {
        file.source_code_info = None;
    }
    let out = PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default());
    let bytes = prost::Message::encode_to_vec(&descriptors);
    if let Err(error) = std::fs::write(out.join("envoy_descriptors.bin"), bytes) {
        panic!("writing the descriptor set: {error}");
    }
}

/// Finds `envoy-types`' `proto/` directory through `cargo metadata`, which knows where the
/// registry unpacked it. Filtered to the target platform: offline, cargo can only describe
/// the packages it downloaded, and it downloads none for other platforms (Windows crates).
///
/// `cargo metadata` describes the whole workspace, dev-dependencies included, while
/// `cargo build -p bosun` on a fresh machine downloads only what that package needs; so when
/// the offline attempt misses packages, a second one may fetch them, at the versions of
/// `Cargo.lock` (`--locked`), as the build itself just did.
fn envoy_types_proto_dir() -> PathBuf {
    let output = match cargo_metadata(true) {
        Ok(output) => output,
        Err(offline) => match cargo_metadata(false) {
            Ok(output) => output,
            Err(online) => {
                panic!("cargo metadata failed offline: {offline}\nand with the network: {online}")
            }
        },
    };
    let metadata: serde_json::Value = match serde_json::from_slice(&output) {
        Ok(value) => value,
        Err(error) => panic!("reading cargo metadata: {error}"),
    };
    let packages = metadata["packages"].as_array().cloned().unwrap_or_default();
    let manifest_path = packages
        .iter()
        .find(|p| p["name"] == "envoy-types")
        .and_then(|p| p["manifest_path"].as_str())
        .map(PathBuf::from);
    match manifest_path.as_deref().and_then(Path::parent) {
        Some(dir) => dir.join("proto"),
        None => panic!("envoy-types not found in cargo metadata"),
    }
}

/// Runs `cargo metadata` for this workspace and the target platform; its JSON, or the error.
fn cargo_metadata(offline: bool) -> Result<Vec<u8>, String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let manifest =
        Path::new(&std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default()).join("Cargo.toml");
    let output = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--locked"])
        .args(offline.then_some("--offline"))
        .arg("--filter-platform")
        .arg(std::env::var_os("TARGET").unwrap_or_default())
        .arg("--manifest-path")
        .arg(&manifest)
        .output();
    match output {
        Ok(output) if output.status.success() => Ok(output.stdout),
        Ok(output) => Err(String::from_utf8_lossy(&output.stderr).into_owned()),
        Err(error) => Err(format!("running cargo: {error}")),
    }
}
