//! A cdylib with a crates.io dependency: the build must fetch it, then compile offline.

#[no_mangle]
pub extern "C" fn test() {
    let mut buffer = itoa::Buffer::new();
    println!("with_dep formats {}", buffer.format(20_180_u32));
}
