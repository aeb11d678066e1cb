//! Link options for the release binary only (the dev and test builds are left as they are).
//!
//! `-z pack-relative-relocs` stores the position-independent binary's relative relocations as
//! a bitmap (RELR) instead of 24 bytes each: the dynamic loader reads 1.6 MB less at every
//! start, and none of it stays resident (about 1.5 MiB of an idle console's 15). It needs
//! GNU ld 2.38 or lld 15, and glibc 2.36 where the binary runs (Debian 12, Ubuntu 24.04);
//! set `ARGOS_NO_RELR=1` to build for an older glibc.
fn main() {
    println!("cargo:rerun-if-env-changed=ARGOS_NO_RELR");
    let release = std::env::var("PROFILE").is_ok_and(|p| p == "release");
    let linux = std::env::var("CARGO_CFG_TARGET_OS").is_ok_and(|os| os == "linux");
    if release && linux && std::env::var_os("ARGOS_NO_RELR").is_none() {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}
