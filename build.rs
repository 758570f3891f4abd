//! Build-time work:
//! - embed the default model package (models/default) into the native CLI, after checking
//!   that every file its manifest lists is there with the promised size, so a broken
//!   package fails `cargo build` instead of a user's first translation.

use std::env;
use std::fmt::Write as _;
use std::path::Path;

fn main() {
    let manifest_dir = env::var("CARGO_MANIFEST_DIR").unwrap();
    let out_dir = env::var("OUT_DIR").unwrap();
    let target_arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let pkg = Path::new(&manifest_dir).join("models/default");
    println!("cargo:rerun-if-changed=models/default");
    let mut code = String::from("/// The embedded default package: (file name, bytes).\npub static EMBEDDED_MODEL: &[(&str, &[u8])] = &[\n");
    // The browser fetches models over HTTP; only the native CLI carries one inside.
    if target_arch != "wasm32" && pkg.join("manifest.json").exists() {
        let manifest: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(pkg.join("manifest.json")).unwrap())
                .expect("models/default/manifest.json is valid JSON");
        let mut names = vec!["manifest.json".to_string()];
        for f in manifest["files"].as_array().expect("manifest lists files") {
            let name = f["name"].as_str().unwrap().to_string();
            let size = f["size"].as_u64().unwrap();
            let actual = std::fs::metadata(pkg.join(&name))
                .unwrap_or_else(|e| panic!("models/default/{name}: {e}"))
                .len();
            assert_eq!(
                actual, size,
                "models/default/{name}: size differs from manifest"
            );
            names.push(name);
        }
        for name in names {
            let path = pkg.join(&name);
            println!("cargo:rerun-if-changed={}", path.display());
            writeln!(
                code,
                "    ({name:?}, include_bytes!({:?})),",
                path.display().to_string()
            )
            .unwrap();
        }
    }
    code.push_str("];\n");
    std::fs::write(Path::new(&out_dir).join("embedded_model.rs"), code).unwrap();
}
