//! Rebuild when a migration is added or changed: refinery embeds `../migrations` at compile time
//! but cannot tell cargo to watch the folder itself.
fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}
