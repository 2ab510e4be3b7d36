//! Bosun's local runtime: the whole mesh on one machine, without Kubernetes or containers.
//! Deployments become pods of local processes ([`plan`]) kept running by a [`supervisor`],
//! each beside its own sidecar; the [`runtime`] writes them to pilot's store as a kubelet
//! would, and [`state`] lets later commands find the running mesh.

pub mod netns;
pub mod plan;
pub mod runtime;
pub mod state;
pub mod supervisor;

pub use runtime::{CaptureMode, ContainerStatus, Mesh, MeshStatus, PodStatus, UpError, UpOptions};
