//! Embeds the tool catalog (`schemas/tools/*.json`) into the crate.

use std::{env, fmt::Write, fs, path::PathBuf};

fn main() {
    let dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR")).join("../../schemas/tools");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .expect("schemas/tools exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    let mut code = String::from("pub static EMBEDDED_TOOLS: &[(&str, &str)] = &[\n");
    for f in files {
        let path = f.canonicalize().expect("tool schema path");
        println!("cargo:rerun-if-changed={}", path.display());
        let name = f.file_stem().and_then(|s| s.to_str()).expect("utf-8 file name");
        writeln!(code, "    ({name:?}, include_str!({:?})),", path.display().to_string()).expect("write to String");
    }
    code.push_str("];\n");
    fs::write(PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("tools.rs"), code).expect("write tools.rs");
}
