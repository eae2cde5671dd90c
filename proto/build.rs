// Generates the Rust types for the event schema and the ledger's gRPC API.
// Needs `protoc` (Debian: protobuf-compiler), installed by deploy/install-deps.sh.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    tonic_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_protos(&["vigil/events.proto", "vigil/ledger.proto"], &["."])?;
    println!("cargo:rerun-if-changed=vigil");
    Ok(())
}
