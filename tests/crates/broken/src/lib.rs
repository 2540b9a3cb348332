//! A cdylib that does not compile: the build must fail with cargo's own error.

#[no_mangle]
pub extern "C" fn test() -> u32 {
    let count: u32 = "not a number";
    count
}
