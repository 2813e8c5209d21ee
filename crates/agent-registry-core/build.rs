//! `sqlx::migrate!` embeds the migrations (at the workspace's top, `migrations/`) at compile
//! time: a new one must rebuild the crate.

fn main() {
    println!("cargo:rerun-if-changed=../../migrations");
}
