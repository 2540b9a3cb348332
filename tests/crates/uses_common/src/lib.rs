//! Calls into `common`, a path dependency outside this crate's workspace.

#[no_mangle]
pub extern "C" fn test() {
    println!("uses_common says {}", common::greeting());
}
