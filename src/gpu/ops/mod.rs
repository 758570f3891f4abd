//! The kernels as typed operations, one module per WGSL kernel (as web-rwkv and ratchet do).
//! Each module owns:
//! - `Params`, the uniform at binding 0: the WGSL `struct Params`, field for field;
//! - its buffer bindings, declared once with [`bindings!`] under the WGSL variables' names and
//!   binding numbers (a test below checks them against the WGSL);
//! - an op struct holding the compiled kernel, whose `record` takes an `Args` struct of named
//!   fields and computes the workgroup count from the shapes.
//!
//! Shapes in the docs are in elements (f32 or u32) unless said otherwise; buffers are row-major.

pub mod attention;
pub mod embed;
pub mod gather_rows;
pub mod head_delta;
pub mod kv_cache;
pub mod layer_norm;
pub mod linear;
pub mod row_summary;
pub mod top_k;

/// How a kernel accesses one binding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Uniform,
    Read,
    ReadWrite,
}

/// One `@group(0) @binding(number) var<…> name` of a kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Binding {
    pub number: u32,
    pub name: &'static str,
    pub access: Access,
}

/// The uniform parameters every kernel takes at binding 0.
pub const PARAMS: Binding = Binding {
    number: 0,
    name: "p",
    access: Access::Uniform,
};

/// A kernel's storage buffers, by binding: made by [`bindings!`].
pub trait Bindings {
    /// Every binding of the kernel, [`PARAMS`] first.
    const LAYOUT: &'static [Binding];
    /// The buffers at their binding numbers (all but [`PARAMS`]).
    fn buffers(&self) -> Vec<(u32, &wgpu::Buffer)>;
}

/// Declare a kernel's storage bindings once: a struct with one buffer field per WGSL variable
/// (same name), and its [`Bindings`] layout.
/// `bindings!(Name { x: 1 Read, y: 5 ReadWrite })`.
macro_rules! bindings {
    ($(#[$doc:meta])* $name:ident {
        $($(#[$fdoc:meta])* $field:ident: $number:literal $access:ident),+ $(,)?
    }) => {
        $(#[$doc])*
        pub struct $name<'b> {
            $($(#[$fdoc])* pub $field: &'b wgpu::Buffer,)+
        }

        impl $crate::gpu::ops::Bindings for $name<'_> {
            const LAYOUT: &'static [$crate::gpu::ops::Binding] = &[
                $crate::gpu::ops::PARAMS,
                $($crate::gpu::ops::Binding {
                    number: $number,
                    name: stringify!($field),
                    access: $crate::gpu::ops::Access::$access,
                }),+
            ];
            fn buffers(&self) -> Vec<(u32, &wgpu::Buffer)> {
                vec![$(($number, self.$field)),+]
            }
        }
    };
}
pub(crate) use bindings;

pub use attention::Attention;
pub use embed::Embed;
pub use gather_rows::GatherRows;
pub use head_delta::HeadDelta;
pub use layer_norm::LayerNorm;
pub use linear::{F16Products, Linear};
pub use row_summary::RowSummary;
pub use top_k::TopK;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::compose::{Precision, WeightFormat};
    use crate::gpu::kernels::module_source;

    /// (binding, name, access) of every `@group(0) @binding(n) var<…> name` in `wgsl`.
    fn wgsl_bindings(wgsl: &str) -> Vec<Binding> {
        let re = regex::Regex::new(
            r"@group\(0\)\s*@binding\((\d+)\)\s*var<(uniform|storage,\s*read|storage,\s*read_write)>\s+(\w+)",
        )
        .unwrap();
        let mut found: Vec<Binding> = re
            .captures_iter(wgsl)
            .map(|c| Binding {
                number: c[1].parse().unwrap(),
                name: Box::leak(c[3].to_string().into_boxed_str()),
                access: match c[2].split_whitespace().collect::<String>().as_str() {
                    "uniform" => Access::Uniform,
                    "storage,read" => Access::Read,
                    _ => Access::ReadWrite,
                },
            })
            .collect();
        found.sort_by_key(|b| b.number);
        found
    }

    /// Fields of the WGSL `struct Params` (each 4 bytes).
    fn wgsl_params_fields(wgsl: &str) -> usize {
        let start = wgsl.find("struct Params {").expect("a Params struct");
        let body = &wgsl[start..wgsl[start..].find('}').unwrap() + start];
        body.lines().filter(|l| l.contains(':')).count()
    }

    fn check<B: Bindings, P>(file: &'static str, format: Option<WeightFormat>) {
        for precision in Precision::ALL {
            let wgsl = module_source(file, format, precision);
            let mut declared = B::LAYOUT.to_vec();
            declared.sort_by_key(|b| b.number);
            assert_eq!(
                declared,
                wgsl_bindings(&wgsl),
                "{file} ({format:?}, {precision:?})"
            );
            assert_eq!(
                std::mem::size_of::<P>(),
                4 * wgsl_params_fields(&wgsl),
                "{file}: Params"
            );
        }
    }

    #[test]
    fn bindings_and_params_match_the_wgsl() {
        for format in WeightFormat::ALL {
            for file in linear::SHADERS {
                check::<linear::Bindings, linear::Params>(file, Some(format));
            }
            check::<embed::Bindings, embed::Params>(embed::SHADER, Some(format));
        }
        check::<linear::SplitSumBindings, linear::SplitSumParams>(linear::SPLIT_SUM_SHADER, None);
        check::<layer_norm::Bindings, layer_norm::Params>(layer_norm::SHADER, None);
        check::<attention::Bindings, attention::Params>(attention::SHADER, None);
        check::<top_k::Bindings, top_k::Params>(top_k::SHADER, None);
        check::<row_summary::Bindings, row_summary::Params>(row_summary::SHADER, None);
        check::<gather_rows::Bindings, gather_rows::Params>(gather_rows::SHADER, None);
        check::<head_delta::Bindings, head_delta::Params>(head_delta::SHADER, None);
    }
}
