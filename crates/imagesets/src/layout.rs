//! Pixel layouts: planar CHW (one plane per channel, as PyTorch tensors and CIFAR records) to
//! interleaved HWC (as [`ImageSet`](crate::ImageSet) and image files).

/// One image given as CHW planes (`channels` planes of `src.len() / channels` values each) in HWC
/// order, every value passed through `f` (for example `|v| v` for bytes, or a float-to-byte
/// conversion). Panics if `channels` is 0 or does not divide `src.len()`.
pub fn chw_to_hwc<T: Copy, U>(src: &[T], channels: usize, f: impl Fn(T) -> U) -> Vec<U> {
    assert!(
        channels > 0 && src.len().is_multiple_of(channels),
        "{} values cannot be {channels} equal channel planes",
        src.len()
    );
    let plane = src.len() / channels;
    let mut out = Vec::with_capacity(src.len());
    for p in 0..plane {
        out.extend(src[p..].iter().step_by(plane).map(|&v| f(v)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn planes_become_interleaved_pixels() {
        // 2 channels of a 1x3 image: plane 0 = [1, 2, 3], plane 1 = [10, 20, 30]
        let chw = [1u8, 2, 3, 10, 20, 30];
        assert_eq!(chw_to_hwc(&chw, 2, |v| v), vec![1, 10, 2, 20, 3, 30]);
        assert_eq!(chw_to_hwc(&chw, 1, |v| v), chw.to_vec());
        assert_eq!(chw_to_hwc(&chw, 3, u32::from), vec![1, 3, 20, 2, 10, 30]);
        let floats = [0.0f32, 1.0, 0.5, 0.25];
        assert_eq!(chw_to_hwc(&floats, 2, |v| (v * 100.0) as u8), vec![0, 50, 100, 25]);
        assert!(chw_to_hwc(&[] as &[u8], 3, |v| v).is_empty());
    }

    #[test]
    fn matches_the_index_formula() {
        for (c, h, w) in [(1, 4, 5), (3, 7, 2), (4, 3, 3)] {
            let chw: Vec<f32> = (0..c * h * w).map(|i| (i as f32 * 0.37) % 1.0).collect();
            let to_u8 = |v: f32| (v.clamp(0.0, 1.0) * 255.0).round() as u8;
            let mut want = vec![0u8; c * h * w];
            for ch in 0..c {
                for i in 0..h * w {
                    want[i * c + ch] = to_u8(chw[ch * h * w + i]);
                }
            }
            assert_eq!(chw_to_hwc(&chw, c, to_u8), want, "{c}x{h}x{w}");
        }
    }

    #[test]
    #[should_panic(expected = "cannot be 4 equal channel planes")]
    fn unequal_planes_panic() {
        chw_to_hwc(&[0u8; 6], 4, |v| v);
    }
}
