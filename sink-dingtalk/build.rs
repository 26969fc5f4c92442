//! Link flags for the `sink-dingtalk` binary only (not the library, tests or
//! other crates): see docs/development.md#footprint.

use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=link-order.txt");
    let var = |name: &str| std::env::var(name).unwrap_or_default();
    let linux_gnu = var("CARGO_CFG_TARGET_OS") == "linux" && var("CARGO_CFG_TARGET_ENV") == "gnu";
    if linux_gnu {
        // RELR: the ~14,000 relative relocations of a PIE (vtables, panic
        // locations, static tables) packed into a bitmap of a few KiB
        // instead of 340 KiB of `.rela.dyn` the loader reads at every start.
        // glibc 2.36 (Debian bookworm, the image's base) loads it.
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
    if linux_gnu && var("CARGO_CFG_TARGET_ARCH") == "x86_64" && var("PROFILE") == "release" {
        start_up_layout();
    }
}

/// The functions start-up runs, laid out together, then those the events
/// run (scripts/link-order.sh writes the list): an idle sink maps 2 MiB of
/// its code instead of 6.5. rustc links this target with lld, which reads
/// the list; a name the code no longer has is skipped without a word, so
/// a list written by another toolchain (whose names all differ) is said.
fn start_up_layout() {
    let order = Path::new(env!("CARGO_MANIFEST_DIR")).join("link-order.txt");
    if let Some(other) = other_linker() {
        println!(
            "cargo:warning=linking with {other}, not rustc's lld: the start-up layout (link-order.txt) is left out, and an idle sink maps about 4 MiB more (docs/development.md#footprint)"
        );
        return;
    }
    let Ok(list) = std::fs::read_to_string(&order) else {
        println!(
            "cargo:warning=cannot read {}: the start-up layout is left out; scripts/link-order.sh writes it",
            order.display()
        );
        return;
    };
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let this = Command::new(&rustc)
        .arg("-V")
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .unwrap_or_default();
    let written_with = list
        .lines()
        .find_map(|line| line.strip_prefix("# Written with: "))
        .unwrap_or("an unknown toolchain");
    if written_with != this {
        println!(
            "cargo:warning=link-order.txt was written with {written_with}, this is {this}: its names do not match and the start-up layout does not apply (an idle sink maps about 4 MiB more); run scripts/link-order.sh"
        );
    }
    println!(
        "cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}",
        order.display()
    );
    println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
}

/// The linker this build asked for instead of rustc's own lld, if any: GNU
/// ld does not know `--symbol-ordering-file`.
fn other_linker() -> Option<String> {
    // Cargo names a linker configured for the target (`target.*.linker`).
    if let Ok(linker) = std::env::var("RUSTC_LINKER") {
        return Some(linker);
    }
    let flags = std::env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    flags.split('\u{1f}').find_map(|flag| {
        let flag = flag
            .trim_start_matches("-C")
            .trim_start_matches("--codegen=");
        let not_lld = flag.starts_with("linker=")
            || flag.starts_with("linker-flavor=")
            || flag == "linker-features=-lld"
            || flag == "link-self-contained=-linker";
        not_lld.then(|| flag.to_owned())
    })
}
