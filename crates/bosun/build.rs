//! Link options that make the proxy's resident memory small, for the target where Rust links
//! with its own LLD (x86_64 Linux, the default since Rust 1.90).
//!
//! - `-z pack-relative-relocs` (DT_RELR): a position-independent binary has a relocation for
//!   every pointer in its data; packed, the table the loader reads at start shrinks from about
//!   500 KiB to a few KiB. The binary then needs glibc 2.36 or later, so it is used only when
//!   the glibc it is built against is that recent.
//! - `--symbol-ordering-file=proxy.order`: the functions a proxy runs (start-up and the
//!   request path, as recorded by `bench/order.py`) are laid out together. The kernel maps
//!   code in 64 KiB windows around each page touched, so scattered, they make most of the
//!   text resident; together, about what runs. Names that no longer exist are skipped: a
//!   stale file costs memory, never correctness. Its names depend on the compiler, so a
//!   file recorded with another rustc gets a warning.
//!
//! Neither is used with another linker (`-C linker=…`, `-fuse-ld=…`, `-C linker-features`),
//! or with `BOSUN_PLAIN_LINK` set.

use std::path::Path;
use std::process::Command;

fn main() {
    let order = Path::new("proxy.order");
    println!("cargo:rerun-if-changed={}", order.display());
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=BOSUN_PLAIN_LINK");
    if std::env::var_os("BOSUN_PLAIN_LINK").is_some()
        || std::env::var("TARGET").as_deref() != Ok("x86_64-unknown-linux-gnu")
        || !default_linker()
    {
        return;
    }
    if glibc_at_least(2, 36) {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
    let Ok(recorded) = std::fs::read_to_string(order) else {
        return;
    };
    let manifest = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default();
    println!(
        "cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}",
        Path::new(&manifest).join(order).display()
    );
    println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
    let compiler = rustc_release();
    let recorded_with = recorded
        .lines()
        .find_map(|line| line.strip_prefix("# rustc: "))
        .map(str::trim);
    if compiler.is_some() && recorded_with != compiler.as_deref() {
        println!(
            "cargo:warning=crates/bosun/proxy.order was recorded with rustc {}, this is {}: \
             its names may not match; run bench/order.py",
            recorded_with.unwrap_or("(unknown)"),
            compiler.as_deref().unwrap_or("(unknown)")
        );
    }
}

/// Whether rustc links with its default linker (its own LLD on this target).
fn default_linker() -> bool {
    if std::env::var_os("RUSTC_LINKER").is_some() {
        return false;
    }
    let flags = std::env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    !flags.split('\x1f').any(|flag| {
        [
            "fuse-ld",
            "linker=",
            "linker-flavor",
            "linker-features",
            "link-self-contained",
        ]
        .iter()
        .any(|option| flag.contains(option))
    })
}

/// Whether the build machine's glibc (the one linked against) is at least `major.minor`.
fn glibc_at_least(major: u32, minor: u32) -> bool {
    let Ok(output) = Command::new("getconf").arg("GNU_LIBC_VERSION").output() else {
        return false;
    };
    // "glibc 2.36"
    let text = String::from_utf8_lossy(&output.stdout);
    let version = text.trim().trim_start_matches("glibc").trim();
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let found = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    found >= (major, minor)
}

/// The release of the compiler building this (`1.95.0`).
fn rustc_release() -> Option<String> {
    let rustc = std::env::var_os("RUSTC")?;
    let output = Command::new(rustc).arg("-vV").output().ok()?;
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .find_map(|line| line.strip_prefix("release: "))
        .map(|release| release.trim().to_owned())
}
