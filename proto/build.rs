// Generates the Rust types for the event schema and the ledger's and approval service's gRPC APIs.
// Needs `protoc` (Debian: protobuf-compiler), installed by deploy/install-deps.sh.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    tonic_build::configure()
        .build_client(true)
        .build_server(true)
        // Maps encode in key order, so an event's bytes do not depend on a
        // hash seed.
        .btree_map(["."])
        .compile_protos(
            &[
                "vigil/events.proto",
                "vigil/events_v1.proto",
                "vigil/ledger.proto",
                "vigil/approvals.proto",
            ],
            &["."],
        )?;
    println!("cargo:rerun-if-changed=vigil");
    Ok(())
}
