//! Three kinds of data a plugin keeps alive without referencing it, and how each survives
//! `--gc-sections`: an unreferenced `#[used]` static (kept only by linkers that honour the
//! retain flag, SHF_GNU_RETAIN: lld >= 13, GNU ld >= 2.36), a constructor in `.init_array`
//! and a `__start_`/`__stop_` section (kept by every linker).

use std::sync::atomic::{AtomicU32, Ordering};

/// Unreferenced: nothing but `#[used]` (and the retain flag rustc gives it) keeps it.
#[used]
#[link_section = "compatbuild_used"]
static USED_MARKER: [u8; 16] = *b"compatbuild-used";

static CONSTRUCTED: AtomicU32 = AtomicU32::new(0);

extern "C" fn constructor() {
    CONSTRUCTED.store(7, Ordering::SeqCst);
}

/// A constructor: the loader runs it when the library is loaded.
#[used]
#[link_section = ".init_array"]
static CONSTRUCTOR: extern "C" fn() = constructor;

/// A registry section, found through the linker's `__start_`/`__stop_` symbols.
#[used]
#[link_section = "compatbuild_reg"]
static REGISTERED: [u32; 3] = [1, 2, 3];

extern "C" {
    static __start_compatbuild_reg: u32;
    static __stop_compatbuild_reg: u32;
}

/// 7 when the constructor ran.
#[no_mangle]
pub extern "C" fn retain_constructed() -> u32 {
    CONSTRUCTED.load(Ordering::SeqCst)
}

/// How many u32 entries the registry section holds (3 when it survived).
#[no_mangle]
pub extern "C" fn retain_registered() -> usize {
    let start = &raw const __start_compatbuild_reg as usize;
    let stop = &raw const __stop_compatbuild_reg as usize;
    (stop - start) / 4
}

/// The smoke harness calls `test`: it aborts unless the constructor ran and the registry survived.
#[no_mangle]
pub extern "C" fn test() {
    let (constructed, registered) = (retain_constructed(), retain_registered());
    println!("retain: constructor {constructed}, registry entries {registered}");
    if constructed != 7 || registered != 3 {
        std::process::abort();
    }
}
