fn main() {
    println!("cargo:rerun-if-changed=src/greet.c");
    cc::Build::new().file("src/greet.c").compile("greet");
}
