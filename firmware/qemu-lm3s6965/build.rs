//! Puts the board's memory map where the linker finds it, as `memory.x`: `memory.x` for the lm3s6965evb,
//! `memory-mps2-an386.x` with the feature `mps2-an386`.
use std::{env, fs, path::PathBuf};

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR"));
    let map = if env::var_os("CARGO_FEATURE_MPS2_AN386").is_some() { "memory-mps2-an386.x" } else { "memory.x" };
    fs::copy(map, out.join("memory.x")).expect("copy the memory map");
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rerun-if-changed=memory.x");
    println!("cargo:rerun-if-changed=memory-mps2-an386.x");
}
