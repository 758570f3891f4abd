// Shared by every kernel: activations and the sentinels for masked scores.
// WGSL has no infinity literal; these stay far below any real logit.
const MASKED: f32 = -3.0e38;   // a banned token (reported as -inf by the host)
const TAKEN: f32 = -3.4e38;    // already chosen by top-k in this row

const ACT_NONE: u32 = 0u;
const ACT_SWISH: u32 = 1u;
const ACT_GELU: u32 = 2u;
const ACT_GELU_TANH: u32 = 3u;
const ACT_RELU: u32 = 4u;
const ACT_TANH: u32 = 5u;
const ACT_SIGMOID: u32 = 6u;

// erf by Abramowitz & Stegun 7.1.26 refined (|error| < 1.5e-7), WGSL has none.
fn erf_approx(x: f32) -> f32 {
    let s = sign(x);
    let a = abs(x);
    let t = 1.0 / (1.0 + 0.3275911 * a);
    let y = 1.0 - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t * exp(-a * a);
    return s * y;
}

fn activate(act: u32, x: f32) -> f32 {
    switch act {
        case 1u: { return x / (1.0 + exp(-x)); }
        case 2u: { return 0.5 * x * (1.0 + erf_approx(x * 0.7071067811865476)); }
        case 3u: {
            let inner = clamp(0.7978845608028654 * (x + 0.044715 * x * x * x), -15.0, 15.0);
            return 0.5 * x * (1.0 + tanh(inner));
        }
        case 4u: { return max(x, 0.0); }
        case 5u: { return tanh(clamp(x, -15.0, 15.0)); }
        case 6u: { return 1.0 / (1.0 + exp(-x)); }
        default: { return x; }
    }
}

// IEEE half to float by bit manipulation: exact, and needs no f16 capability (unpack2x16float
// does on some backends).
fn half_to_f32(h: u32) -> f32 {
    let sign = (h & 0x8000u) << 16u;
    let e = (h >> 10u) & 0x1fu;
    let mant = h & 0x3ffu;
    if e == 0u {
        let v = f32(mant) * 5.9604644775390625e-8; // subnormal: mant * 2^-24
        return select(v, -v, sign != 0u);
    }
    if e == 31u {
        return bitcast<f32>(sign | 0x7f800000u | (mant << 13u));
    }
    return bitcast<f32>(sign | ((e + 112u) << 23u) | (mant << 13u));
}

fn unpack_halves(word: u32) -> vec2<f32> {
    return vec2<f32>(half_to_f32(word & 0xffffu), half_to_f32(word >> 16u));
}
