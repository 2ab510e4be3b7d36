//! Link options that make the proxy's resident memory small, for the target where Rust links
//! with its own LLD (x86_64 Linux, the default since Rust 1.90).
//!
//! - `-z pack-relative-relocs` (DT_RELR, glibc 2.36): a position-independent binary has a
//!   relocation for every pointer in its data; packed, the table the loader reads at start
//!   shrinks from about 500 KiB to a few KiB.
//! - `--symbol-ordering-file=proxy.order`: the functions a proxy runs (start-up and the
//!   request path, as recorded by `bench/order.py`) are laid out together. The kernel maps
//!   code in 64 KiB windows around each page touched, so scattered, they make most of the
//!   text resident; together, about what runs. Names that no longer exist are skipped:
//!   a stale file costs memory, never correctness.

use std::path::Path;

fn main() {
    let order = Path::new("proxy.order");
    println!("cargo:rerun-if-changed={}", order.display());
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var("TARGET").as_deref() != Ok("x86_64-unknown-linux-gnu") {
        return;
    }
    println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    if order.exists() {
        let manifest = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default();
        let path = Path::new(&manifest).join(order);
        println!(
            "cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}",
            path.display()
        );
        println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
    }
}
