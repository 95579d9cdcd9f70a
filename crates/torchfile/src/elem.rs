//! Reading and writing single little-endian elements as `f64`, including the 16-bit float
//! formats (IEEE half and bfloat16), with round-to-nearest-even like PyTorch.

use crate::dtype::DType;

/// Reads one element. `bytes` must hold at least `dtype.size()` bytes (missing bytes read as 0).
pub(crate) fn read_f64(dtype: DType, bytes: &[u8]) -> f64 {
    let mut b = [0u8; 8];
    let n = dtype.size().min(bytes.len());
    b[..n].copy_from_slice(&bytes[..n]);
    match dtype {
        DType::F64 => f64::from_le_bytes(b),
        DType::F32 => f32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64,
        DType::F16 => f16_to_f32(u16::from_le_bytes([b[0], b[1]])) as f64,
        DType::BF16 => bf16_to_f32(u16::from_le_bytes([b[0], b[1]])) as f64,
        DType::I64 => i64::from_le_bytes(b) as f64,
        DType::I32 => i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64,
        DType::I16 => i16::from_le_bytes([b[0], b[1]]) as f64,
        DType::I8 => b[0] as i8 as f64,
        DType::U8 => b[0] as f64,
        DType::Bool => (b[0] != 0) as u8 as f64,
    }
}

/// Writes one element into `out[..dtype.size()]` (nothing is written if `out` is shorter).
pub(crate) fn write_f64(dtype: DType, v: f64, out: &mut [u8]) {
    let bytes: Vec<u8> = match dtype {
        DType::F64 => v.to_le_bytes().to_vec(),
        DType::F32 => (v as f32).to_le_bytes().to_vec(),
        DType::F16 => f32_to_f16(v as f32).to_le_bytes().to_vec(),
        DType::BF16 => f32_to_bf16(v as f32).to_le_bytes().to_vec(),
        DType::I64 => (v as i64).to_le_bytes().to_vec(),
        DType::I32 => (v as i64 as i32).to_le_bytes().to_vec(),
        DType::I16 => (v as i64 as i16).to_le_bytes().to_vec(),
        DType::I8 => vec![v as i64 as i8 as u8],
        DType::U8 => vec![v as i64 as u8],
        DType::Bool => vec![(v != 0.0) as u8],
    };
    if let Some(dst) = out.get_mut(..bytes.len()) {
        dst.copy_from_slice(&bytes);
    }
}

/// Reads one integer element as `i64` (floats are truncated toward zero).
pub(crate) fn read_i64(dtype: DType, bytes: &[u8]) -> i64 {
    let mut b = [0u8; 8];
    let n = dtype.size().min(bytes.len());
    b[..n].copy_from_slice(&bytes[..n]);
    match dtype {
        DType::I64 => i64::from_le_bytes(b),
        DType::I32 => i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as i64,
        DType::I16 => i16::from_le_bytes([b[0], b[1]]) as i64,
        DType::I8 => b[0] as i8 as i64,
        DType::U8 => b[0] as i64,
        DType::Bool => (b[0] != 0) as i64,
        _ => read_f64(dtype, bytes) as i64,
    }
}

/// Writes one integer element, wrapping like a C cast.
pub(crate) fn write_i64(dtype: DType, v: i64, out: &mut [u8]) {
    let bytes = v.to_le_bytes();
    let n = dtype.size();
    if dtype == DType::Bool {
        if let Some(b) = out.first_mut() {
            *b = (v != 0) as u8;
        }
    } else if dtype.is_float() {
        write_f64(dtype, v as f64, out);
    } else if let Some(dst) = out.get_mut(..n) {
        dst.copy_from_slice(&bytes[..n]);
    }
}

pub(crate) fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) as u32) << 31;
    let exp = ((h >> 10) & 0x1f) as u32;
    let mant = (h & 0x3ff) as u32;
    if exp == 0 {
        // Zero or subnormal: mant * 2^-24, exact in f32.
        let v = mant as f32 * (1.0 / 16_777_216.0);
        return if sign != 0 { -v } else { v };
    }
    let bits = if exp == 0x1f { sign | 0x7f80_0000 | (mant << 13) } else { sign | ((exp + 112) << 23) | (mant << 13) };
    f32::from_bits(bits)
}

pub(crate) fn f32_to_f16(f: f32) -> u16 {
    let x = f.to_bits();
    let sign = ((x >> 16) & 0x8000) as u16;
    let exp = ((x >> 23) & 0xff) as i32;
    let mant = x & 0x007f_ffff;
    if exp == 0xff {
        let nan = if mant != 0 { 0x0200 | (mant >> 13) as u16 } else { 0 };
        return sign | 0x7c00 | nan;
    }
    let e = exp - 127 + 15;
    if e >= 0x1f {
        return sign | 0x7c00;
    }
    if e <= 0 {
        if e < -10 {
            return sign;
        }
        let m = mant | 0x0080_0000;
        let shift = (14 - e) as u32;
        let half = 1u32 << (shift - 1);
        let rem = m & ((1u32 << shift) - 1);
        let mut r = m >> shift;
        if rem > half || (rem == half && r & 1 == 1) {
            r += 1;
        }
        return sign | r as u16;
    }
    let mut r = ((e as u32) << 10) | (mant >> 13);
    let rem = mant & 0x1fff;
    if rem > 0x1000 || (rem == 0x1000 && r & 1 == 1) {
        r += 1; // may carry into the exponent, which is the correct rounding (up to inf)
    }
    sign | r as u16
}

pub(crate) fn bf16_to_f32(h: u16) -> f32 {
    f32::from_bits((h as u32) << 16)
}

pub(crate) fn f32_to_bf16(f: f32) -> u16 {
    let x = f.to_bits();
    if f.is_nan() {
        return ((x >> 16) as u16) | 0x0040;
    }
    let rounding = 0x7fff + ((x >> 16) & 1);
    (x.wrapping_add(rounding) >> 16) as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16_round_trips_every_value() {
        for h in 0..=u16::MAX {
            let f = f16_to_f32(h);
            if f.is_nan() {
                assert!(f16_to_f32(f32_to_f16(f)).is_nan());
            } else {
                assert_eq!(f32_to_f16(f), h, "{h:#06x} -> {f}");
            }
        }
    }

    #[test]
    fn f16_rounds_to_nearest_even() {
        assert_eq!(f32_to_f16(1.0), 0x3c00);
        assert_eq!(f32_to_f16(65504.0), 0x7bff);
        assert_eq!(f32_to_f16(65520.0), 0x7c00); // rounds up to inf
        assert_eq!(f32_to_f16(1.0 + 1.0 / 2048.0), 0x3c00); // tie -> even
        assert_eq!(f32_to_f16(1.0 + 3.0 / 2048.0), 0x3c02); // tie -> even
        assert_eq!(f32_to_f16(2f32.powi(-24)), 0x0001);
        assert_eq!(f32_to_f16(2f32.powi(-25)), 0x0000); // tie -> even (0)
        assert_eq!(f32_to_f16(1.5 * 2f32.powi(-25)), 0x0001);
        assert_eq!(f32_to_f16(-0.0), 0x8000);
    }

    #[test]
    fn bf16_round_trips_and_rounds() {
        for h in 0..=u16::MAX {
            let f = bf16_to_f32(h);
            if !f.is_nan() {
                assert_eq!(f32_to_bf16(f), h);
            }
        }
        assert_eq!(f32_to_bf16(1.0 + 1.0 / 256.0), 0x3f80); // tie -> even
    }
}
