//! A plain Rust library: compatbuild must refuse it, since nothing could dlopen it.

pub fn answer() -> u32 {
    42
}
