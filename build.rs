//! Compiles `proto/bakkal/v1/*.proto` with protox (pure Rust, no system `protoc`) into tonic
//! services and prost messages, and writes the file descriptor set that reflection serves.

use std::{env, fs, path::PathBuf};

use prost::Message as _;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_dir = PathBuf::from("proto");
    let mut files: Vec<PathBuf> = fs::read_dir(proto_dir.join("bakkal/v1"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "proto"))
        .collect();
    files.sort();

    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed={}", proto_dir.display());
    for f in &files {
        println!("cargo:rerun-if-changed={}", f.display());
    }

    let error_details = proto_dir.join("google/rpc/error_details.proto");
    println!("cargo:rerun-if-changed={}", error_details.display());

    let fds = protox::compile(&files, [&proto_dir])?;
    // compile_fds writes no descriptor file: write the one reflection serves ourselves, with
    // the google.rpc error details added so that clients can decode error details.
    let mut reflected = files.clone();
    reflected.push(error_details);
    let reflection_fds = protox::compile(&reflected, [&proto_dir])?;
    let out = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(
        out.join("bakkal_descriptor.bin"),
        reflection_fds.encode_to_vec(),
    )?;

    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}
