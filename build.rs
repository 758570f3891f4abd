//! Build-time work:
//! - embed the default model package (models/default) into the native CLI, after checking
//!   that every file its manifest lists is there with the promised size, so a broken
//!   package fails `cargo build` instead of a user's first translation;
//! - parse and validate every WGSL kernel (joined with each weight format it reads) with naga,
//!   so a broken shader fails the build instead of a user's first GPU translation.

use std::env;
use std::fmt::Write as _;
use std::path::Path;

#[allow(dead_code)]
mod compose {
    include!("src/gpu/compose.rs");
}

fn validate_shaders(manifest_dir: &str) {
    let dir = Path::new(manifest_dir).join("src/gpu/shaders");
    println!("cargo:rerun-if-changed=src/gpu/shaders");
    println!("cargo:rerun-if-changed=src/gpu/compose.rs");
    let read = |name: &str| {
        std::fs::read_to_string(dir.join(name))
            .unwrap_or_else(|e| panic!("src/gpu/shaders/{name}: {e}"))
    };
    let module = |kernel: &'static str,
                  format: Option<compose::WeightFormat>,
                  precision: compose::Precision| {
        let texts: Vec<String> = compose::module_files(kernel, format, precision)
            .into_iter()
            .map(read)
            .collect();
        compose::compose(&texts.iter().map(String::as_str).collect::<Vec<_>>())
    };
    use compose::Precision;
    use naga::valid::Capabilities;
    // (name, source, the capabilities it needs); matrix-product kernels in both precisions.
    let mut modules = Vec::new();
    let weight_kernels = compose::WEIGHT_KERNELS
        .into_iter()
        .map(|k| (k, Capabilities::empty()))
        .chain(
            compose::SUBGROUP_KERNELS
                .into_iter()
                .map(|k| (k, Capabilities::SUBGROUP)),
        );
    for (kernel, needs) in weight_kernels {
        for format in compose::WeightFormat::ALL {
            for precision in Precision::ALL {
                if precision == Precision::F16 && !compose::MATMUL_KERNELS.contains(&kernel) {
                    continue;
                }
                let needs = match precision {
                    Precision::F32 => needs,
                    Precision::F16 => needs | Capabilities::SHADER_FLOAT16,
                };
                let name = format!("{kernel} + {} ({precision:?})", format.dequant_file());
                modules.push((name, module(kernel, Some(format), precision), needs));
            }
        }
    }
    for kernel in compose::PLAIN_KERNELS {
        let src = module(kernel, None, Precision::F32);
        modules.push((kernel.to_string(), src, Capabilities::empty()));
    }
    for (name, src, capabilities) in modules {
        let module = naga::front::wgsl::parse_str(&src)
            .unwrap_or_else(|e| panic!("WGSL {name} does not parse:\n{}", e.emit_to_string(&src)));
        naga::valid::Validator::new(naga::valid::ValidationFlags::all(), capabilities)
            .validate(&module)
            .unwrap_or_else(|e| panic!("WGSL {name} is invalid:\n{}", e.emit_to_string(&src)));
    }
}

fn main() {
    let manifest_dir = env::var("CARGO_MANIFEST_DIR").unwrap();
    let out_dir = env::var("OUT_DIR").unwrap();
    let target_arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    validate_shaders(&manifest_dir);
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
