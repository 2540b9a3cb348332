//! A plugin whose symbols come from its host: like a Python or Lua module, it leaves
//! `host_add` (a function) and `host_base` (a data object) undefined, for the program that
//! loads it to define. A bare `dlopen(RTLD_NOW)` fails with `undefined symbol`.

use std::ffi::c_int;

extern "C" {
    fn host_add(a: c_int, b: c_int) -> c_int;
    static host_base: c_int;
}

/// Calls the host's function with the host's data, and prints what it returns.
#[no_mangle]
pub extern "C" fn test() {
    let sum = unsafe { host_add(host_base, 2) };
    println!("host_api: host_add(host_base, 2) = {sum}");
}
