//! How good a detection statistic is over a population of models (issue 16; README "Scanning"): the
//! ROC curve, ROC-AUC (the Mann-Whitney statistic: the chance that a random Trojaned model scores above
//! a random clean one, ties counting one half), the TPR at a fixed FPR, and seeded bootstrap 95%
//! intervals (resampling models with replacement, percentiles 2.5 and 97.5).
use rand::Rng;
use rand::SeedableRng;

/// One point of a ROC curve: the rates when every score `>= threshold` is called positive.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct RocPoint {
    /// Decision threshold.
    pub threshold: f64,
    /// False-positive rate (clean models called Trojaned).
    pub fpr: f64,
    /// True-positive rate (Trojaned models called Trojaned).
    pub tpr: f64,
}

/// The ROC curve of `scores` (higher = more likely Trojaned) against `positive`, from (0, 0) to
/// (1, 1), one point per distinct score (ties move both rates at once). Empty without both classes.
pub fn roc_curve(scores: &[f64], positive: &[bool]) -> Vec<RocPoint> {
    let (p, n) = counts(positive);
    if p == 0 || n == 0 {
        return vec![];
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let mut out = vec![RocPoint { threshold: f64::INFINITY, fpr: 0.0, tpr: 0.0 }];
    let (mut tp, mut fp) = (0usize, 0usize);
    let mut i = 0;
    while i < order.len() {
        let s = scores[order[i]];
        while i < order.len() && scores[order[i]] == s {
            if positive[order[i]] {
                tp += 1;
            } else {
                fp += 1;
            }
            i += 1;
        }
        out.push(RocPoint { threshold: s, fpr: fp as f64 / n as f64, tpr: tp as f64 / p as f64 });
    }
    out
}

fn counts(positive: &[bool]) -> (usize, usize) {
    let p = positive.iter().filter(|&&x| x).count();
    (p, positive.len() - p)
}

/// ROC-AUC: P(score of a random positive > score of a random negative) + P(equal)/2. `None`
/// without both classes.
pub fn auc(scores: &[f64], positive: &[bool]) -> Option<f64> {
    let (p, n) = counts(positive);
    if p == 0 || n == 0 {
        return None;
    }
    // Rank-sum with midranks for ties: AUC = (R+ - p(p+1)/2) / (p n).
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j < order.len() && scores[order[j]] == scores[order[i]] {
            j += 1;
        }
        let midrank = (i + 1 + j) as f64 / 2.0; // ranks i+1 ..= j
        rank_sum += midrank * order[i..j].iter().filter(|&&k| positive[k]).count() as f64;
        i = j;
    }
    Some((rank_sum - (p * (p + 1)) as f64 / 2.0) / (p * n) as f64)
}

/// The highest TPR over thresholds whose FPR is at most `max_fpr` (the curve's points; no
/// interpolation). `None` without both classes.
pub fn tpr_at_fpr(scores: &[f64], positive: &[bool], max_fpr: f64) -> Option<f64> {
    let curve = roc_curve(scores, positive);
    curve
        .iter()
        .filter(|pt| pt.fpr <= max_fpr + 1e-12)
        .map(|pt| pt.tpr)
        .fold(None, |a, t| Some(a.map_or(t, |a: f64| a.max(t))))
}

/// A value with its bootstrap 95% interval.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Estimate {
    /// On all models.
    pub value: f64,
    /// 2.5th percentile of the bootstrap replicates.
    pub low: f64,
    /// 97.5th percentile.
    pub high: f64,
}

/// `stat` on all `n` items and its bootstrap interval: `reps` resamples of `n` indices with
/// replacement (seeded), replicates where `stat` is `None` (e.g. a resample without clean models)
/// skipped. `None` when `stat` is `None` on all items.
pub fn bootstrap(n: usize, reps: usize, seed: u64, stat: impl Fn(&[usize]) -> Option<f64>) -> Option<Estimate> {
    let all: Vec<usize> = (0..n).collect();
    let value = stat(&all)?;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ 0x524F_4342);
    let mut reps_v: Vec<f64> = (0..reps)
        .filter_map(|_| {
            let idx: Vec<usize> = (0..n).map(|_| rng.gen_range(0..n)).collect();
            stat(&idx)
        })
        .collect();
    if reps_v.is_empty() {
        return Some(Estimate { value, low: value, high: value });
    }
    reps_v.sort_by(f64::total_cmp);
    let q = |f: f64| reps_v[((reps_v.len() - 1) as f64 * f).round() as usize];
    Some(Estimate { value, low: q(0.025), high: q(0.975) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_matches_a_hand_computed_example_with_ties() {
        // Positives 0.9, 0.6, 0.4; negatives 0.6, 0.2. Pairs (p > n): 0.9>0.6, 0.9>0.2, 0.6=0.6 (1/2),
        // 0.6>0.2, 0.4<0.6, 0.4>0.2 -> (1 + 1 + 0.5 + 1 + 0 + 1) / 6 = 4.5/6 = 0.75.
        let s = [0.9, 0.6, 0.4, 0.6, 0.2];
        let y = [true, true, true, false, false];
        assert!((auc(&s, &y).unwrap() - 0.75).abs() < 1e-12);
        // The curve: thresholds 0.9 (tpr 1/3), 0.6 (tie: tpr 2/3, fpr 1/2), 0.4, 0.2.
        let c = roc_curve(&s, &y);
        let pts: Vec<(f64, f64)> = c.iter().map(|p| (p.fpr, p.tpr)).collect();
        assert_eq!(pts, vec![(0.0, 0.0), (0.0, 1.0 / 3.0), (0.5, 2.0 / 3.0), (0.5, 1.0), (1.0, 1.0)]);
        // The trapezoid area under that curve is the AUC.
        let area: f64 = pts.windows(2).map(|w| (w[1].0 - w[0].0) * (w[1].1 + w[0].1) / 2.0).sum();
        assert!((area - 0.75).abs() < 1e-12);
        assert_eq!(tpr_at_fpr(&s, &y, 0.05), Some(1.0 / 3.0));
        assert_eq!(tpr_at_fpr(&s, &y, 0.5), Some(1.0));
        assert_eq!(auc(&s, &[true; 5]), None);
        assert!((auc(&[1.0, 0.0], &[true, false]).unwrap() - 1.0).abs() < 1e-12);
        assert!((auc(&[0.0, 1.0], &[true, false]).unwrap()).abs() < 1e-12);
    }

    #[test]
    fn bootstrap_brackets_the_value_and_is_seeded() {
        let s: Vec<f64> = (0..40).map(|i| (i as f64 * 0.37).sin()).collect();
        let y: Vec<bool> =
            (0..40).map(|i| (i as f64 * 0.37).sin() + if i % 3 == 0 { 0.8 } else { -0.2 } > 0.3).collect();
        let stat = |idx: &[usize]| {
            let (a, b): (Vec<f64>, Vec<bool>) = idx.iter().map(|&i| (s[i], y[i])).unzip();
            auc(&a, &b)
        };
        let e = bootstrap(40, 500, 7, stat).unwrap();
        assert!(e.low <= e.value && e.value <= e.high && e.low < e.high, "{e:?}");
        assert_eq!(bootstrap(40, 500, 7, stat), Some(e));
    }
}
