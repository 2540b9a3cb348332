//! A cdylib whose build script compiles C with the cc crate.

use std::ffi::{c_char, c_int, c_ulong, CStr};

extern "C" {
    fn greet_format(out: *mut c_char, size: c_ulong, who: *const c_char) -> c_int;
}

#[no_mangle]
pub extern "C" fn test() {
    let mut buf = [0 as c_char; 64];
    let who = c"glibc";
    let n = unsafe { greet_format(buf.as_mut_ptr(), buf.len() as c_ulong, who.as_ptr()) };
    let text = unsafe { CStr::from_ptr(buf.as_ptr()) };
    println!("{} [{}]", text.to_string_lossy(), n);
}
