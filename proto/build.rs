//! Compiles `proto/swarmnet.proto` with protox (pure Rust: no `protoc` needed) and generates
//! the tonic client and server code from the resulting descriptor set.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/swarmnet.proto");
    let fds = protox::compile(["swarmnet.proto"], ["proto"])?;
    tonic_prost_build::configure()
        .type_attribute(".", "#[derive(serde::Serialize)]")
        .compile_fds(fds)?;
    Ok(())
}
