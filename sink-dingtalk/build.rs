//! Link flags for the `sink-dingtalk` binary only (not the library, tests or
//! other crates): see docs/development.md#footprint.

fn main() {
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if os == "linux" && env == "gnu" {
        // RELR: the ~49,000 relative relocations of a PIE (vtables, panic
        // locations, static tables) packed into a bitmap of a few KiB
        // instead of 1.1 MiB of `.rela.dyn` the loader reads at every start.
        // glibc 2.36 (Debian bookworm, the image's base) loads it.
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}
