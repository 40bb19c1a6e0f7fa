//! Draining: move clients off over a window, in evenly spaced batches, so the rest of
//! the cluster absorbs the reconnects gradually instead of as one storm.

use std::time::Duration;

use tokio::time::Instant;

/// One step of a drain: at `at` after the start, cut `count` sockets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batch {
    pub at: Duration,
    pub count: usize,
}

/// Shortest spacing between batches; more batches than that buys nothing.
pub const MIN_BATCH_SPACING: Duration = Duration::from_millis(100);

/// Spreads `sockets` over `window`: batch `i` of `n` starts at `window * i / n`, sizes
/// differ by at most one, and there are never more batches than sockets.
pub fn schedule(sockets: usize, window: Duration) -> Vec<Batch> {
    if sockets == 0 {
        return Vec::new();
    }
    let slots = (window.as_millis() / MIN_BATCH_SPACING.as_millis()).max(1);
    let batches = usize::try_from(slots).unwrap_or(usize::MAX).min(sockets);
    let (base, extra) = (sockets / batches, sockets % batches);
    (0..batches)
        .map(|i| Batch {
            at: window.mul_f64(i as f64 / batches as f64),
            count: base + usize::from(i < extra),
        })
        .collect()
}

/// Runs `cut` for every id following [`schedule`]; returns early when `abort` fires.
pub async fn run<F: FnMut(&str)>(
    ids: Vec<String>,
    window: Duration,
    abort: &tokio_util::sync::CancellationToken,
    mut cut: F,
) {
    let start = Instant::now();
    let mut ids = ids.into_iter();
    for batch in schedule(ids.len(), window) {
        tokio::select! {
            _ = abort.cancelled() => return,
            _ = tokio::time::sleep_until(start + batch.at) => {}
        }
        for id in ids.by_ref().take(batch.count) {
            cut(&id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_are_spread_evenly() {
        let ms = Duration::from_millis;
        type Case = (&'static str, usize, Duration, &'static [(u64, usize)]);
        let cases: &[Case] = &[
            ("no sockets", 0, ms(1000), &[]),
            (
                "fewer sockets than slots",
                3,
                ms(3000),
                &[(0, 1), (1000, 1), (2000, 1)],
            ),
            ("uneven split", 7, ms(300), &[(0, 3), (100, 2), (200, 2)]),
            ("zero window: all at once", 5, ms(0), &[(0, 5)]),
            ("window below one slot", 4, ms(50), &[(0, 4)]),
        ];
        for (name, sockets, window, want) in cases {
            let got: Vec<(u64, usize)> = schedule(*sockets, *window)
                .iter()
                .map(|b| (b.at.as_millis() as u64, b.count))
                .collect();
            assert_eq!(&got, want, "case {name}");
        }
    }

    #[test]
    fn every_socket_is_scheduled_once() {
        for sockets in [1, 99, 1000, 12345] {
            let total: usize = schedule(sockets, Duration::from_secs(30))
                .iter()
                .map(|b| b.count)
                .sum();
            assert_eq!(total, sockets);
        }
    }
}
