//! A benchmark plugin with enough code that an incremental rebuild does real work:
//! many monomorphised generic routines, as a real plugin has.

use std::collections::{BTreeMap, HashMap};

macro_rules! kernels {
    ($($name:ident: $t:ty),* $(,)?) => {
        $(
            pub fn $name(input: &[$t]) -> (BTreeMap<String, usize>, HashMap<usize, Vec<$t>>) {
                let mut counts = BTreeMap::new();
                let mut groups: HashMap<usize, Vec<$t>> = HashMap::new();
                let mut buf = itoa::Buffer::new();
                for (i, v) in input.iter().enumerate() {
                    let key = buf.format(i % 17).to_string();
                    *counts.entry(key).or_insert(0) += 1;
                    groups.entry(i % 7).or_default().push(*v);
                }
                for g in groups.values_mut() {
                    g.sort_by(|a, b| a.partial_cmp(b).unwrap());
                    g.dedup();
                }
                (counts, groups)
            }
        )*
    };
}

macro_rules! family {
    ($($m:ident),*) => { $( pub mod $m {
        use super::*;
        kernels!(k_u8: u8, k_u16: u16, k_u32: u32, k_u64: u64, k_i8: i8, k_i16: i16, k_i32: i32,
                 k_i64: i64, k_f32: f32, k_f64: f64, k_usize: usize, k_isize: isize);
    } )* };
}

family!(a, b, c, d, e, f, g, h, i, j, k, l, m, n, o, p);

fn run_all() -> usize {
    let data: Vec<u32> = (0..1000).collect();
    let mut total = 0;
    total += a::k_u32(&data).0.len();
    total += p::k_u32(&data).1.len();
    total
}

#[no_mangle]
pub extern "C" fn test() {
    println!("plugin ran {} kernels", run_all());
}

// Keep every kernel alive in the cdylib, as exported entry points would.
#[no_mangle]
pub static KERNELS: [fn(&[u32]) -> (BTreeMap<String, usize>, HashMap<usize, Vec<u32>>); 16] = [
    a::k_u32, b::k_u32, c::k_u32, d::k_u32, e::k_u32, f::k_u32, g::k_u32, h::k_u32,
    i::k_u32, j::k_u32, k::k_u32, l::k_u32, m::k_u32, n::k_u32, o::k_u32, p::k_u32,
];
