//! When the daily peaks of a site trend to its limit: a least-squares line through
//! the peaks of the last days, and the instant it reaches the limit.

use crate::domain::Millis;

const DAY_MS: i64 = 86_400_000;

/// Days of peaks the trend is fitted to.
pub const WINDOW_DAYS: i64 = 14;
/// How far ahead a crossing is announced.
pub const HORIZON_MS: i64 = 7 * DAY_MS;
/// Fewer days than this make no trend.
pub const MIN_DAYS: usize = 3;

/// The instant the least-squares line through `peaks` (`(day start, peak)`, in any
/// order) reaches `limit`, when it rises and does so within [`HORIZON_MS`] of `now`;
/// `now` itself when the line is already at or above the limit. `None` for a flat or
/// falling trend, a limit of 0, or fewer than [`MIN_DAYS`] days.
pub fn limit_reached_at(peaks: &[(Millis, i64)], limit: i64, now: Millis) -> Option<Millis> {
    if limit <= 0 || peaks.len() < MIN_DAYS {
        return None;
    }
    // x in days since the first day (the peak of a day is dated at its middle), y the
    // peak: the slope in sessions per day and the line's value at x = 0.
    let x0 = peaks.iter().map(|p| p.0).min()?;
    let n = peaks.len() as f64;
    let xs: Vec<f64> = peaks
        .iter()
        .map(|p| (p.0 - x0) as f64 / DAY_MS as f64 + 0.5)
        .collect();
    let ys: Vec<f64> = peaks.iter().map(|p| p.1 as f64).collect();
    let mx = xs.iter().sum::<f64>() / n;
    let my = ys.iter().sum::<f64>() / n;
    let sxx: f64 = xs.iter().map(|x| (x - mx) * (x - mx)).sum();
    let sxy: f64 = xs.iter().zip(&ys).map(|(x, y)| (x - mx) * (y - my)).sum();
    if sxx <= 0.0 {
        return None;
    }
    let slope = sxy / sxx;
    if slope <= 1e-9 {
        return None;
    }
    let intercept = my - slope * mx;
    let x_at_limit = (limit as f64 - intercept) / slope;
    let at = x0 + (x_at_limit * DAY_MS as f64).round() as i64;
    let at = at.max(now);
    (at <= now + HORIZON_MS).then_some(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn days(peaks: &[i64]) -> Vec<(Millis, i64)> {
        peaks
            .iter()
            .enumerate()
            .map(|(i, p)| (i as i64 * DAY_MS, *p))
            .collect()
    }

    #[test]
    fn a_rising_trend_is_announced_with_its_crossing() {
        // One more a day, 1 on day 0 to 14 on day 13 (dated at noon): 20 is reached
        // at noon of day 19.
        let peaks = days(&(1..=14).collect::<Vec<_>>());
        let now = 14 * DAY_MS;
        assert_eq!(
            limit_reached_at(&peaks, 20, now),
            Some(19 * DAY_MS + DAY_MS / 2)
        );
        // 30 is reached at day 29.5, 15.5 days out: too far.
        assert_eq!(limit_reached_at(&peaks, 30, now), None);
        // Already above the line's value: now.
        assert_eq!(limit_reached_at(&peaks, 10, now), Some(now));
    }

    #[test]
    fn flat_falling_or_thin_series_are_not() {
        let now = 14 * DAY_MS;
        assert_eq!(limit_reached_at(&days(&[10; 14]), 11, now), None);
        let falling: Vec<i64> = (1..=14).rev().collect();
        assert_eq!(limit_reached_at(&days(&falling), 15, now), None);
        assert_eq!(limit_reached_at(&days(&[1, 9]), 10, now), None);
        assert_eq!(limit_reached_at(&days(&[1, 2, 3]), 0, now), None);
        // Noise around a flat line stays quiet.
        let noisy = days(&[8, 10, 9, 10, 8, 9, 10, 9, 8, 10, 9, 9, 10, 8]);
        assert_eq!(limit_reached_at(&noisy, 12, now), None);
    }
}
