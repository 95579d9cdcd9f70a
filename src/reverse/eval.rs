//! Judging a recovered trigger: binarisation, attack success on held-out images, overlap with the
//! true trigger, and Neural Cleanse's anomaly index.
use std::str::FromStr;

use tch::{Kind, Tensor};

use super::optim::{stamp, InputSpace};
use super::Space;
use crate::attack::Location;
use crate::data::{Augment, Batches, ImageSet, Normalization};
use crate::error::{Error, Result};
use crate::model::Model;

/// The 0/1 mask of the `k` largest entries of `mask` (ties: the lower index first). The reference's
/// `hard_mask` takes the last `k` of an ascending sort, the same set up to ties.
pub fn binarize_top_k(mask: &[f32], k: usize) -> Vec<f32> {
    let mut idx: Vec<usize> = (0..mask.len()).collect();
    idx.sort_by(|&a, &b| mask[b].total_cmp(&mask[a]).then(a.cmp(&b)));
    let mut out = vec![0f32; mask.len()];
    for &i in idx.iter().take(k) {
        out[i] = 1.0;
    }
    out
}

/// Intersection over union of two 0/1 masks (entries > 0.5 count as set).
pub fn iou(a: &[f32], b: &[f32]) -> f64 {
    let (mut inter, mut union) = (0usize, 0usize);
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (x > 0.5, y > 0.5);
        inter += (x && y) as usize;
        union += (x || y) as usize;
    }
    if union == 0 {
        0.0
    } else {
        inter as f64 / union as f64
    }
}

/// `--true-trigger`: `X,Y,SIZE` (column, row of the top-left pixel, side) or `LOCATION:SIZE` with a
/// `--trigger-location` name (e.g. `reference-upper-right:5`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct TrueTrigger {
    /// Where the trigger sits.
    pub location: Location,
    /// Its side in pixels.
    pub size: usize,
}

impl From<TrueTrigger> for String {
    fn from(t: TrueTrigger) -> String {
        t.to_string()
    }
}

impl TryFrom<String> for TrueTrigger {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        s.parse()
    }
}

impl FromStr for TrueTrigger {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let bad = || {
            Error::invalid(
                "true trigger",
                format!("`{s}`: expected X,Y,SIZE (column, row, side) or LOCATION:SIZE (e.g. reference-upper-right:5)"),
            )
        };
        let (location, size) = if let Some((loc, size)) = s.split_once(':') {
            (loc.parse::<Location>()?, size)
        } else {
            let v: Vec<&str> = s.split(',').collect();
            if v.len() != 3 {
                return Err(bad());
            }
            (
                Location::At { x: v[0].trim().parse().map_err(|_| bad())?, y: v[1].trim().parse().map_err(|_| bad())? },
                v[2],
            )
        };
        let size = size.trim().parse::<usize>().ok().filter(|&n| n > 0).ok_or_else(bad)?;
        if location == Location::Random {
            return Err(Error::invalid("true trigger", "a random location has no single true trigger"));
        }
        Ok(TrueTrigger { location, size })
    }
}

impl std::fmt::Display for TrueTrigger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.location {
            Location::At { x, y } => write!(f, "{x},{y},{}", self.size),
            l => write!(f, "{l}:{}", self.size),
        }
    }
}

impl TrueTrigger {
    /// The 0/1 `h x w` mask of the true trigger.
    pub fn mask(&self, h: usize, w: usize) -> Result<Vec<f32>> {
        let (top, left) = self.location.place((h, w), (self.size, self.size), |_, _| (0, 0))?;
        let mut m = vec![0f32; h * w];
        for y in top..top + self.size {
            for x in left..left + self.size {
                m[y * w + x] = 1.0;
            }
        }
        Ok(m)
    }
}

/// Recovered-trigger attack success (docs/METHOD.md §6): `mask` (H·W) binarised to its top `patch_area`
/// pixels, `pattern` (C·H·W, in the stamping space of `space`) kept, stamped on every clean image
/// of `test` whose true label is not `target`; the fraction classified as `target`.
#[allow(clippy::too_many_arguments)]
pub fn recovered_asr(
    model: &Model,
    norm: &Normalization,
    space: Space,
    test: &ImageSet,
    target: u32,
    mask: &[f32],
    pattern: &[f32],
    patch_area: usize,
) -> f64 {
    let (c, h, w) = (test.channels as i64, test.height as i64, test.width as i64);
    let device = model.device();
    let hard = Tensor::from_slice(&binarize_top_k(mask, patch_area)).view([1, 1, h, w]).to_device(device);
    let p = Tensor::from_slice(pattern).view([1, c, h, w]).to_device(device);
    let keep: Vec<usize> = (0..test.n).filter(|&i| test.labels[i] != target).collect();
    if keep.is_empty() {
        return 0.0;
    }
    let inputs = InputSpace::new(space, norm, test.channels, device);
    let view = match space {
        Space::Pixel => Normalization::none(test.channels),
        Space::Normalized => norm.clone(),
    };
    let mut hits = 0i64;
    tch::no_grad(|| {
        for b in Batches::with_order(
            test,
            keep.clone(),
            500,
            &view,
            Augment::NONE,
            rand::SeedableRng::seed_from_u64(0),
            device,
        ) {
            let x = inputs.to_model(&stamp(&b.images, &hard, &p));
            hits += model.forward_frozen(&x).argmax(-1, false).eq(target as i64).sum(Kind::Int64).int64_value(&[]);
        }
    });
    hits as f64 / keep.len() as f64
}

/// Median of a non-empty slice (mean of the two middle values for an even count).
pub fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let n = s.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

/// Neural Cleanse's consistency constant (MAD -> standard deviation under normality).
pub const MAD_CONSISTENCY: f64 = 1.4826;

/// Median and median absolute deviation of `l1`.
pub fn median_mad(l1: &[f64]) -> (f64, f64) {
    let med = median(l1);
    let dev: Vec<f64> = l1.iter().map(|v| (v - med).abs()).collect();
    (med, median(&dev))
}

/// Anomaly index of entry `i` over all of `l1`: `(median − l1[i]) / (1.4826·MAD)`, clamped at 0 (only
/// labels below the median are anomalous). With MAD = 0 it is +∞ below the median, else 0.
pub fn anomaly_of(l1: &[f64], i: usize) -> f64 {
    let (med, mad) = median_mad(l1);
    let below = med - l1[i];
    if below <= 0.0 {
        0.0
    } else if mad == 0.0 {
        f64::INFINITY
    } else {
        below / (MAD_CONSISTENCY * mad)
    }
}

/// The scale the anomaly index measures mask sizes on.
///
/// - `linear`: Neural Cleanse's statistic on the l1 norms themselves (faithful).
/// - `log`: the same statistic on ln(l1) (the default). Mask sizes vary multiplicatively between
///   labels, so on the linear scale the large masks inflate the MAD and a trigger a few times smaller
///   than the typical label's mask can stay below 2; on the log scale "k times smaller" counts the
///   same for every model. The indexes on both scales for the built-in models are in README.
///   Heavily pruned tickets of clean models can score high on either scale, which the detector's
///   consensus rule addresses (`decide.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AnomalyScale {
    /// Median and MAD over ln(l1) (the default).
    #[default]
    Log,
    /// Median and MAD over l1 itself (Neural Cleanse).
    Linear,
}
crate::choices!(AnomalyScale {
    Log => "log": "ln of the mask l1",
    Linear => "linear": "the mask l1 itself (Neural Cleanse)",
});

impl AnomalyScale {
    /// The values the median and MAD are taken over (`ln` of l1 floored at 1e-12 for `log`).
    pub fn apply(self, l1: &[f64]) -> Vec<f64> {
        match self {
            AnomalyScale::Linear => l1.to_vec(),
            AnomalyScale::Log => l1.iter().map(|v| v.max(1e-12).ln()).collect(),
        }
    }
}

/// Neural Cleanse's anomaly index of the smallest norm: `(argmin, (median − min) / (1.4826·MAD))`
/// with median and MAD over all of `l1`.
pub fn anomaly_index(l1: &[f64]) -> (usize, f64) {
    let i = (0..l1.len()).min_by(|&a, &b| l1[a].total_cmp(&l1[b])).unwrap_or(0);
    if l1.is_empty() {
        return (0, 0.0);
    }
    (i, anomaly_of(l1, i))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_scale_worked_example() {
        // l1 = [10, 40, 80, 160, 20, 40, 80, 160, 40, 80]; ln: a = ln 10, then ln 40 = a + 2 ln 2, ...
        // in units of ln 2 above ln 10: [0, 2, 3, 4, 1, 2, 3, 4, 2, 3] -> median 2.5, |dev| =
        // [2.5, .5, .5, 1.5, 1.5, .5, .5, 1.5, .5, .5] -> MAD .5; index of label 0 = 2.5 / (1.4826 * .5)
        // = 3.37 (the ln 2 units cancel)
        let l1 = [10.0, 40.0, 80.0, 160.0, 20.0, 40.0, 80.0, 160.0, 40.0, 80.0];
        let x = AnomalyScale::Log.apply(&l1);
        assert!((anomaly_of(&x, 0) - 2.5 / (MAD_CONSISTENCY * 0.5)).abs() < 1e-9);
        // The linear statistic of the same masks stays below 2: median (40 + 80) / 2 = 60, |dev| =
        // [50, 20, 20, 100, 40, 20, 20, 100, 20, 20] -> MAD 20; index 50 / (1.4826 * 20) = 1.69.
        assert!((anomaly_of(&l1, 0) - 50.0 / (MAD_CONSISTENCY * 20.0)).abs() < 1e-9);
        assert_eq!(AnomalyScale::Linear.apply(&l1), l1.to_vec());
    }

    #[test]
    fn anomaly_index_worked_example() {
        // l1 = [10, 50, 52, 48, 55, 50, 49, 51, 53, 47]
        // sorted: 10 47 48 49 50 | 50 51 52 53 55 -> median = (50 + 50) / 2 = 50
        // |l1 - 50| = [40, 0, 2, 2, 5, 0, 1, 1, 3, 3]; sorted 0 0 1 1 2 | 2 3 3 5 40 -> MAD = 2
        // anomaly index of the min (label 0) = (50 - 10) / (1.4826 * 2) = 40 / 2.9652 = 13.48981...
        let l1 = [10.0, 50.0, 52.0, 48.0, 55.0, 50.0, 49.0, 51.0, 53.0, 47.0];
        assert_eq!(median_mad(&l1), (50.0, 2.0));
        let (i, a) = anomaly_index(&l1);
        assert_eq!(i, 0);
        assert!((a - 40.0 / 2.9652).abs() < 1e-12, "{a}");
        assert!((a - 13.489815).abs() < 1e-5);
        // Above the median: not anomalous.
        assert_eq!(anomaly_of(&l1, 4), 0.0);
        // Label 9 (47): (50 - 47) / 2.9652 = 1.0117...
        assert!((anomaly_of(&l1, 9) - 3.0 / 2.9652).abs() < 1e-12);
        // Flat norms: MAD 0, nothing below the median.
        assert_eq!(anomaly_index(&[3.0, 3.0, 3.0]).1, 0.0);
        assert_eq!(anomaly_index(&[1.0, 3.0, 3.0, 3.0]).1, f64::INFINITY);
    }

    #[test]
    fn top_k_binarisation() {
        let m = [0.1, 0.9, 0.5, 0.9, 0.0, 0.7];
        assert_eq!(binarize_top_k(&m, 3), vec![0., 1., 0., 1., 0., 1.]);
        // Ties resolved toward the lower index; k larger than the mask keeps everything.
        assert_eq!(binarize_top_k(&m, 1), vec![0., 1., 0., 0., 0., 0.]);
        assert_eq!(binarize_top_k(&m, 10), vec![1.; 6]);
        assert_eq!(binarize_top_k(&m, 0), vec![0.; 6]);
    }

    #[test]
    fn true_trigger_masks_and_iou() {
        let t: TrueTrigger = "reference-upper-right:5".parse().unwrap();
        let m = t.mask(32, 32).unwrap();
        // Rows/cols 24..29 (start 32-5-3 = 24).
        assert_eq!(m.iter().filter(|&&v| v == 1.0).count(), 25);
        assert_eq!(m[24 * 32 + 24], 1.0);
        assert_eq!(m[28 * 32 + 28], 1.0);
        assert_eq!(m[23 * 32 + 24], 0.0);
        let a: TrueTrigger = "1,2,2".parse().unwrap(); // column 1, row 2
        assert_eq!(a.to_string(), "1,2,2");
        let am = a.mask(4, 4).unwrap();
        assert_eq!(am, vec![0., 0., 0., 0., 0., 0., 0., 0., 0., 1., 1., 0., 0., 1., 1., 0.]);
        let b: TrueTrigger = "2,2,2".parse().unwrap();
        // Overlap 2 pixels, union 6.
        assert!((iou(&am, &b.mask(4, 4).unwrap()) - 2.0 / 6.0).abs() < 1e-12);
        assert_eq!(iou(&am, &am), 1.0);
        for bad in ["1,2", "random:5", "1,2,0", "x:5"] {
            assert!(bad.parse::<TrueTrigger>().is_err(), "{bad}");
        }
        assert!("30,30,5".parse::<TrueTrigger>().unwrap().mask(32, 32).is_err());
    }
}
