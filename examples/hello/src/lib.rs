//! The seed's library: an exported C function that allocates (malloc, through Rust's
//! global allocator) and prints. Built on a current Linux it needs a glibc newer than an
//! old host has; built by compatbuild it loads on glibc 2.18.

/// Called by the smoke harness after `dlopen(path, RTLD_NOW)`.
#[no_mangle]
pub extern "C" fn test() {
    // Vec and String allocate with malloc; the formatting machinery pulls in std's I/O.
    let words: Vec<String> = ["hello", "from", "compatbuild"].iter().map(|w| w.to_string()).collect();
    let boxed = Box::new(words.join(" "));
    println!("{boxed}");
}
