//! Compiles `proto/swarmnet.proto` with protox (pure Rust: no `protoc` needed), generates the
//! tonic client and server code from the resulting descriptor set, and writes that set (with
//! source info, so reflection clients show the .proto comments) to
//! `$OUT_DIR/swarmnet_descriptor.bin` for the server reflection service.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/swarmnet.proto");
    let mut compiler = protox::Compiler::new(["proto"])?;
    compiler
        .include_source_info(true)
        .include_imports(true)
        .open_file("swarmnet.proto")?;
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("swarmnet_descriptor.bin"),
        compiler.encode_file_descriptor_set(),
    )?;
    tonic_prost_build::configure()
        .type_attribute(".", "#[derive(serde::Serialize)]")
        .compile_fds(compiler.file_descriptor_set())?;
    Ok(())
}
