//! Rebalancing after a scale-out: which pods move how many of their clients.
//!
//! Pure: the shells (the operator's step, local mode's supervisor) measure the ready
//! pods, ask [`moves`], and send each chosen pod `POST /api/v1/rebalance`. A round runs
//! once the pods a scale-out added are all Ready, and only when every pod answered: a
//! guess from a partial count could move clients onto a pod that is already full.

use super::load::PodLoad;

/// Pods within this share above the mean keep their clients: moving a few buys little
/// and costs those clients a reconnect.
pub const TOLERANCE: f64 = 0.1;
/// Below this surplus a pod moves nothing (small clusters would only swap clients).
pub const MIN_SURPLUS: i64 = 5;

/// One pod's part of a round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Move {
    pub pod: String,
    pub connections: i64,
}

/// The moves that bring every pod to about the mean: each pod above the mean by more
/// than [`TOLERANCE`] and [`MIN_SURPLUS`] moves its surplus over the mean (rounded up).
/// Nothing when a pod did not answer or fewer than two pods are ready.
pub fn moves(loads: &[PodLoad]) -> Vec<Move> {
    let Some(counts) = loads
        .iter()
        .map(|l| l.connections.map(|c| (l.name.as_str(), c.max(0))))
        .collect::<Option<Vec<_>>>()
    else {
        return Vec::new();
    };
    if counts.len() < 2 {
        return Vec::new();
    }
    let total: i64 = counts.iter().map(|(_, c)| c).sum();
    let pods = i64::try_from(counts.len()).unwrap_or(i64::MAX);
    // The share each pod should end with, rounded up so the moves never overshoot.
    let share = (total + pods - 1) / pods;
    counts
        .into_iter()
        .filter_map(|(pod, count)| {
            let surplus = count - share;
            let above = count as f64 > share as f64 * (1.0 + TOLERANCE);
            (above && surplus >= MIN_SURPLUS).then(|| Move {
                pod: pod.to_string(),
                connections: surplus,
            })
        })
        .collect()
}

/// Asks the pod whose server port is `admin` to move `connections` of its clients over
/// `window_seconds`, after `settle` (until new clients stop arriving); returns how many
/// it will move.
pub async fn request(
    client: &reqwest::Client,
    admin: std::net::SocketAddr,
    token: &str,
    connections: i64,
    window_seconds: i32,
    settle: std::time::Duration,
) -> Result<i64, String> {
    let url = format!("http://{admin}{}", push_contract::paths::REBALANCE);
    let response = client
        .post(url)
        .bearer_auth(token)
        .json(&serde_json::json!({
            "connections": connections,
            "windowSeconds": window_seconds,
            "settleMs": u64::try_from(settle.as_millis()).unwrap_or(u64::MAX),
        }))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    if status != reqwest::StatusCode::ACCEPTED {
        return Err(format!("{status}: {body}"));
    }
    Ok(body["connections"].as_i64().unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loads(counts: &[i64]) -> Vec<PodLoad> {
        counts
            .iter()
            .enumerate()
            .map(|(i, c)| PodLoad::measured(&format!("p{i}"), *c))
            .collect()
    }

    #[test]
    fn the_surplus_over_the_share_moves() {
        // One hot pod, two new ones: it keeps its share (20), moves 40.
        assert_eq!(
            moves(&loads(&[60, 0, 0])),
            vec![Move {
                pod: "p0".into(),
                connections: 40
            }]
        );
        // Two hot pods after a scale from 2 to 4: each moves down to the share (50).
        assert_eq!(
            moves(&loads(&[100, 100, 0, 0]))
                .iter()
                .map(|m| m.connections)
                .collect::<Vec<_>>(),
            vec![50, 50]
        );
        // An uneven total: share rounded up (34), so 101 -> 67 moved, never below.
        assert_eq!(moves(&loads(&[101, 0, 0]))[0].connections, 67);
    }

    #[test]
    fn nothing_moves_when_it_would_buy_little_or_is_unknown() {
        for (case, l) in [
            ("already even", loads(&[20, 21, 19])),
            ("within the tolerance", loads(&[108, 100, 92])),
            ("surplus below the minimum", loads(&[7, 0, 0])),
            ("a single pod", loads(&[60])),
            ("nothing at all", loads(&[])),
            (
                "a pod did not answer",
                vec![
                    PodLoad::measured("a", 60),
                    PodLoad::unmeasured("b"),
                    PodLoad::measured("c", 0),
                ],
            ),
        ] {
            assert_eq!(moves(&l), vec![], "{case}");
        }
    }
}
