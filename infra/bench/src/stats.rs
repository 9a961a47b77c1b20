//! Order statistics over timing samples (nearest rank: every reported figure was observed).

use std::time::Duration;

/// The `p`-th percentile (0..=100) by nearest rank; zero for no samples.
pub fn percentile(samples: &[Duration], p: f64) -> Duration {
    if samples.is_empty() {
        return Duration::ZERO;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub fn median(samples: &[Duration]) -> Duration {
    percentile(samples, 50.0)
}

/// Median of plain numbers (memory figures).
pub fn median_u64(values: &[u64]) -> u64 {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    sorted
        .get(sorted.len().saturating_sub(1) / 2)
        .copied()
        .unwrap_or_default()
}

/// Milliseconds with three decimals, the unit of every table in the report.
pub fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1000.0)
}

/// `a / b` as "1.23x", or "n/a" when the baseline is zero.
pub fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 {
        format!("{:.2}x", a / b)
    } else {
        "n/a".into()
    }
}

pub fn ratio_d(a: Duration, b: Duration) -> String {
    ratio(a.as_secs_f64(), b.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms_list(v: &[u64]) -> Vec<Duration> {
        v.iter().map(|&m| Duration::from_millis(m)).collect()
    }

    #[test]
    fn nearest_rank_percentiles_are_observed_values() {
        let s = ms_list(&[5, 1, 4, 2, 3]);
        assert_eq!(median(&s), Duration::from_millis(3));
        assert_eq!(percentile(&s, 99.0), Duration::from_millis(5));
        assert_eq!(percentile(&s, 0.0), Duration::from_millis(1));
        let hundred: Vec<u64> = (1..=100).collect();
        assert_eq!(
            percentile(&ms_list(&hundred), 99.0),
            Duration::from_millis(99)
        );
        assert_eq!(median(&[]), Duration::ZERO);
    }

    #[test]
    fn lower_median_of_even_counts_and_ratios() {
        assert_eq!(median_u64(&[4, 1, 3, 2]), 2);
        assert_eq!(median_u64(&[]), 0);
        assert_eq!(ratio(3.0, 2.0), "1.50x");
        assert_eq!(ratio(1.0, 0.0), "n/a");
    }
}
