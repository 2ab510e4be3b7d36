//! Helpers for tests: where Istio's reference data is.

use std::path::{Path, PathBuf};

/// The directory holding Istio's unmodified samples and validation data (`shared/istio`).
///
/// `BOSUN_SHARED_DIR` (the `shared` directory) wins; otherwise the nearest `shared/istio` beside
/// the repository or any directory above it. Panics when there is none: tests that need the data
/// must fail loudly, never skip.
pub fn istio_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("BOSUN_SHARED_DIR") {
        let dir = PathBuf::from(dir).join("istio");
        assert!(
            dir.is_dir(),
            "BOSUN_SHARED_DIR has no istio directory: {}",
            dir.display()
        );
        return dir;
    }
    let start = Path::new(env!("CARGO_MANIFEST_DIR"));
    for ancestor in start.ancestors() {
        let candidate = ancestor.join("shared").join("istio");
        if candidate.is_dir() {
            return candidate;
        }
    }
    panic!(
        "Istio reference data not found: expected shared/istio beside the repository \
         (or set BOSUN_SHARED_DIR)"
    );
}

/// A path under [`istio_dir`], e.g. `samples/bookinfo/platform/kube/bookinfo.yaml`.
pub fn istio_path(relative: &str) -> PathBuf {
    let path = istio_dir().join(relative);
    assert!(
        path.exists(),
        "missing Istio reference file {}",
        path.display()
    );
    path
}
