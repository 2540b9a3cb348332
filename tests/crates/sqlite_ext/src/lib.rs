//! `.load ./sqlext` in sqlite3 (entry point `sqlite3_extension_init`); `select half(8)` is 4.0.
//!
//! No libsqlite3 is linked: SQLite is reached through the `sqlite3_api_routines` its host
//! passes in. rusqlite 0.40 is the newest whose bindings ask only SQLite 3.34.1 (bullseye)
//! of the host; 0.41 and later ask 3.45.3, which bookworm's 3.40.1 refuses.

use std::os::raw::{c_char, c_int};

use rusqlite::functions::FunctionFlags;
use rusqlite::{ffi, Connection, Result};

/// Called by SQLite's `sqlite3_load_extension`.
///
/// # Safety
/// Only SQLite calls this, with a valid connection and API table.
#[no_mangle]
pub unsafe extern "C" fn sqlite3_extension_init(
    db: *mut ffi::sqlite3,
    err: *mut *mut c_char,
    api: *mut ffi::sqlite3_api_routines,
) -> c_int {
    // A host older than the bindings: rusqlite would report it with sqlite3_malloc64, which
    // it has not set up by then, and abort the host. Refuse it here instead.
    let routines = api.as_ref();
    let host = routines
        .and_then(|a| a.libversion_number)
        .map_or(0, |f| f());
    if host < ffi::SQLITE_VERSION_NUMBER {
        if let (Some(mprintf), false) = (routines.and_then(|a| a.mprintf), err.is_null()) {
            let needs = ffi::SQLITE_VERSION_NUMBER;
            *err = mprintf(
                c"sqlext needs SQLite %d or newer, not %d".as_ptr(),
                needs,
                host,
            );
        }
        return ffi::SQLITE_ERROR;
    }
    Connection::extension_init2(db, err, api, register)
}

fn register(db: Connection) -> Result<bool> {
    let flags = FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC;
    db.create_scalar_function(c"half", 1, flags, |ctx| Ok(ctx.get::<f64>(0)? / 2.0))?;
    Ok(false) // not persistent: unloaded with its connection
}
