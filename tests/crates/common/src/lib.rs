//! Shared code, reached only through a relative path dependency.

pub fn greeting() -> &'static str {
    "hello from ../common"
}
