//! Link flags for the `sink-dingtalk` binary only (not the library, tests or
//! other crates): see docs/development.md#footprint.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=link-order.txt");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let profile = std::env::var("PROFILE").unwrap_or_default();
    if os == "linux" && env == "gnu" {
        // RELR: the ~14,000 relative relocations of a PIE (vtables, panic
        // locations, static tables) packed into a bitmap of a few KiB
        // instead of 340 KiB of `.rela.dyn` the loader reads at every start.
        // glibc 2.36 (Debian bookworm, the image's base) loads it.
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
    if os == "linux" && env == "gnu" && arch == "x86_64" && profile == "release" {
        // The functions start-up runs, laid out together, then those the
        // events run (scripts/link-order.sh writes the list): an idle sink
        // maps 2 MiB of its code instead of 6.5. rustc links this target
        // with lld, which reads the list; a name the code no longer has is
        // skipped without a word.
        let order = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("link-order.txt");
        println!(
            "cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}",
            order.display()
        );
        println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
    }
}
