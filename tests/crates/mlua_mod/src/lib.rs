//! `require("luamod")` in Lua 5.1 (the library copied as `luamod.so`, entry point
//! `luaopen_luamod`); `luamod.add(2, 3) == 5`.

use mlua::prelude::*;

fn add(_: &Lua, (a, b): (i64, i64)) -> LuaResult<i64> {
    Ok(a + b)
}

#[mlua::lua_module]
fn luamod(lua: &Lua) -> LuaResult<LuaTable> {
    let exports = lua.create_table()?;
    exports.set("add", lua.create_function(add)?)?;
    Ok(exports)
}
