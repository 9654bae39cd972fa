//! Embeds the topic contract (`schemas/manifest.toml` and every `.avsc` it
//! names) into the crate, so the binary carries the exact schemas it speaks.

use std::{env, fmt::Write, fs, path::PathBuf};

#[derive(serde::Deserialize)]
struct Manifest {
    schema: Vec<Entry>,
}

#[derive(serde::Deserialize)]
struct Entry {
    id: u32,
    record: String,
    file: String,
    #[serde(default)]
    refs: Vec<u32>,
}

fn main() {
    let dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR")).join("../../schemas");
    let manifest_path = dir.join("manifest.toml");
    println!("cargo:rerun-if-changed={}", dir.display());
    let text = fs::read_to_string(&manifest_path).expect("schemas/manifest.toml is readable");
    let manifest: Manifest = toml::from_str(&text).expect("schemas/manifest.toml is valid");
    let mut code = String::from("pub static EMBEDDED_SCHEMAS: &[EmbeddedSchema] = &[\n");
    for e in manifest.schema {
        let path = dir.join(&e.file).canonicalize().unwrap_or_else(|_| panic!("schema file {} exists", e.file));
        println!("cargo:rerun-if-changed={}", path.display());
        writeln!(
            code,
            "    EmbeddedSchema {{ id: {}, record: {:?}, file: {:?}, refs: &{:?}, text: include_str!({:?}) }},",
            e.id, e.record, e.file, e.refs, path.display().to_string()
        )
        .expect("write to String");
    }
    code.push_str("];\n");
    fs::write(PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("schemas.rs"), code).expect("write generated schemas.rs");
}
