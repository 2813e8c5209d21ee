//! Compiles `proto/` into Rust with a pure-Rust protobuf compiler, so no system `protoc` is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/agentregistry/v1/types.proto",
        "proto/agentregistry/v1/registry.proto",
        "proto/agentregistry/v1/discovery.proto",
        "proto/agentregistry/v1/admin.proto",
    ];
    for f in &files {
        println!("cargo:rerun-if-changed={f}");
    }
    // `sqlx::migrate!` embeds the migrations at compile time: a new one must rebuild the crate.
    println!("cargo:rerun-if-changed=migrations");
    let fds = protox::compile(files, ["proto"])?;
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    // Reflection serves this set; it includes the imported well-known types.
    std::fs::write(
        out.join("agentregistry_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;
    // Small per-call buffers (see `proto::Codec`): most messages are tens of bytes.
    tonic_prost_build::configure()
        .codec_path("crate::proto::Codec")
        .compile_fds(fds)?;
    Ok(())
}
