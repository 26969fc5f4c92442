//! Compiles `proto/cloudevents.proto` with protox, a pure-Rust protobuf
//! compiler, so building needs no system `protoc`.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    // Inside the workspace the proto lives at the top; a packaged crate carries its own copy.
    let proto_dir = [manifest_dir.join("../proto"), manifest_dir.join("proto")]
        .into_iter()
        .find(|dir| dir.join("cloudevents.proto").exists())
        .ok_or("proto/cloudevents.proto not found next to connector-sdk")?;
    let proto = proto_dir.join("cloudevents.proto");
    println!("cargo:rerun-if-changed={}", proto.display());

    let descriptors = protox::compile([&proto], [&proto_dir])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // prost's codec, but an undecodable request is InvalidArgument (src/proto/codec.rs).
        .codec_path("crate::proto::ProtoCodec")
        .compile_fds(descriptors)?;
    Ok(())
}
