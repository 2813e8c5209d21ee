//! Compiles `proto/` into the server's side of the contract with a pure-Rust protobuf compiler,
//! so no system `protoc` is needed: the service traits (over the messages the client crate
//! generates, so both ends share one set of types) and the descriptor set that reflection and
//! the HTTP API's JSON mapping read.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/agentregistry/v1/types.proto",
        "proto/agentregistry/v1/registry.proto",
        "proto/agentregistry/v1/discovery.proto",
        "proto/agentregistry/v1/admin.proto",
        "proto/agentregistry/v1/catalog.proto",
    ];
    for f in &files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["proto"])?;
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    // Reflection serves this set; it includes the imported well-known types.
    std::fs::write(
        out.join("agentregistry_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;
    tonic_prost_build::configure()
        .build_client(false)
        .extern_path(".agentregistry.v1", "::agent_registry_client::proto")
        .codec_path("::agent_registry_client::proto::Codec")
        .compile_fds(fds)?;
    Ok(())
}
