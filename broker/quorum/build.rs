//! Compiles proto/quorum.proto with protox (a protobuf compiler in Rust, so
//! building needs no protoc) and generates the tonic client and server.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/quorum.proto");
    let fds = protox::compile(["proto/quorum.proto"], ["proto"])?;
    tonic_prost_build::configure().compile_fds(fds)?;
    Ok(())
}
