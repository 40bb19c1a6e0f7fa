//! Table tests of [`decide`]: each case names what would be wrong if it failed.
use super::*;

fn policy(min: i32, max: i32, up_s: u64, down_s: u64, step: i32) -> Policy {
    Policy {
        min_replicas: min,
        max_replicas: max,
        target_connections_per_pod: 100,
        scale_up_window: Duration::from_secs(up_s),
        scale_down_window: Duration::from_secs(down_s),
        max_scale_in_step: step,
    }
}

/// Pods named p0.. with the given loads; `None` = did not answer.
fn pods(loads: &[Option<i64>]) -> Vec<PodLoad> {
    loads
        .iter()
        .enumerate()
        .map(|(i, c)| PodLoad {
            name: format!("p{i}"),
            connections: *c,
        })
        .collect()
}

fn history(now: Instant, entries: &[(u64, i32)]) -> History {
    let mut h = History::default();
    for &(secs_ago, r) in entries {
        h.record(
            now - Duration::from_secs(secs_ago),
            r,
            Duration::from_secs(3600),
        );
    }
    h
}

struct Case {
    name: &'static str,
    policy: Policy,
    current: i32,
    loads: Vec<Option<i64>>,
    /// (seconds ago, recommended replicas), oldest first.
    history: Vec<(u64, i32)>,
    want_replicas: i32,
    want_recommended: i32,
    want_victims: Vec<&'static str>,
}

#[test]
fn decide_table() {
    let m = Some;
    let none = None;
    let cases = vec![
        Case {
            name: "bounds: load needing 12 pods is capped at max 10",
            policy: policy(1, 10, 0, 0, 5),
            current: 4,
            loads: vec![m(300), m(300), m(300), m(300)],
            history: vec![],
            want_replicas: 10,
            want_recommended: 10,
            want_victims: vec![],
        },
        Case {
            name: "bounds: no load stays at min 2, not 0",
            policy: policy(2, 10, 0, 0, 5),
            current: 3,
            loads: vec![m(0), m(0), m(0)],
            history: vec![],
            want_replicas: 2,
            want_recommended: 2,
            want_victims: vec!["p0"],
        },
        Case {
            name: "bounds win over the step cap: 8 pods with max 4 go to 4 at once",
            policy: policy(1, 4, 0, 0, 1),
            current: 8,
            loads: vec![m(10); 8],
            history: vec![],
            want_replicas: 4,
            want_recommended: 1,
            want_victims: vec!["p0", "p1", "p2", "p3"],
        },
        Case {
            name: "tolerance: 5% over target holds",
            policy: policy(1, 10, 0, 0, 1),
            current: 2,
            loads: vec![m(105), m(105)],
            history: vec![],
            want_replicas: 2,
            want_recommended: 2,
            want_victims: vec![],
        },
        Case {
            name: "up at once with a 0 s window: 350 connections need 4 pods",
            policy: policy(1, 10, 0, 300, 1),
            current: 2,
            loads: vec![m(200), m(150)],
            history: vec![(10, 2)],
            want_replicas: 4,
            want_recommended: 4,
            want_victims: vec![],
        },
        Case {
            name: "up window: a lower recommendation 5 s ago caps the scale-up",
            policy: policy(1, 10, 30, 300, 1),
            current: 2,
            loads: vec![m(300), m(300)],
            history: vec![(5, 3)],
            want_replicas: 3,
            want_recommended: 6,
            want_victims: vec![],
        },
        Case {
            name: "up window: the low recommendation is older than the window",
            policy: policy(1, 10, 30, 300, 1),
            current: 2,
            loads: vec![m(300), m(300)],
            history: vec![(40, 2)],
            want_replicas: 6,
            want_recommended: 6,
            want_victims: vec![],
        },
        Case {
            name: "down window: a higher recommendation 100 s ago holds replicas",
            policy: policy(1, 10, 0, 300, 3),
            current: 4,
            loads: vec![m(10), m(10), m(10), m(10)],
            history: vec![(100, 4)],
            want_replicas: 4,
            want_recommended: 1,
            want_victims: vec![],
        },
        Case {
            name: "down window: partial agreement scales down to the window's highest",
            policy: policy(1, 10, 0, 300, 3),
            current: 4,
            loads: vec![m(10), m(10), m(10), m(10)],
            history: vec![(400, 4), (200, 2)],
            want_replicas: 2,
            want_recommended: 1,
            want_victims: vec!["p0", "p1"],
        },
        Case {
            name: "maxScaleInStep: 6 -> 1 recommended removes only 2 per step, least loaded",
            policy: policy(1, 10, 0, 0, 2),
            current: 6,
            loads: vec![m(20), m(3), m(15), m(1), m(9), m(2)],
            history: vec![],
            want_replicas: 4,
            want_recommended: 1,
            want_victims: vec!["p3", "p5"],
        },
        Case {
            name: "partial up: missing pods count as 0, 2 measured at 300 -> 6 of 4",
            policy: policy(1, 10, 0, 0, 1),
            current: 4,
            loads: vec![m(300), m(300), none, none],
            history: vec![],
            want_replicas: 6,
            want_recommended: 6,
            want_victims: vec![],
        },
        Case {
            name: "partial up: counting missing as 0 lands within tolerance, hold",
            policy: policy(1, 10, 0, 0, 1),
            current: 4,
            loads: vec![m(200), m(200), none, none],
            history: vec![],
            want_replicas: 4,
            want_recommended: 4,
            want_victims: vec![],
        },
        Case {
            name: "partial down: missing pods count at target, only the empty measured pod's share goes",
            policy: policy(1, 10, 0, 0, 3),
            current: 4,
            loads: vec![m(0), none, none, none],
            history: vec![],
            want_replicas: 3,
            want_recommended: 3,
            want_victims: vec!["p0"],
        },
        Case {
            name: "partial down: missing data alone never scales down (measured pod below target)",
            policy: policy(1, 10, 0, 0, 3),
            current: 4,
            loads: vec![m(80), none, none, none],
            history: vec![],
            want_replicas: 4,
            want_recommended: 4,
            want_victims: vec![],
        },
        Case {
            name: "partial down: two empty measured + two missing at target -> 2, victims measured",
            policy: policy(1, 10, 0, 0, 3),
            current: 4,
            loads: vec![none, m(0), none, m(0)],
            history: vec![],
            want_replicas: 2,
            want_recommended: 2,
            want_victims: vec!["p1", "p3"],
        },
        Case {
            name: "no pod answered: hold, never scale on no data",
            policy: policy(1, 10, 0, 0, 3),
            current: 3,
            loads: vec![none, none, none],
            history: vec![],
            want_replicas: 3,
            want_recommended: 3,
            want_victims: vec![],
        },
        Case {
            name: "pods still starting: 3 ready at target with 6 desired holds 6",
            policy: policy(1, 10, 0, 0, 3),
            current: 6,
            loads: vec![m(100), m(100), m(100)],
            history: vec![],
            want_replicas: 6,
            want_recommended: 6,
            want_victims: vec![],
        },
    ];
    for c in cases {
        let now = Instant::now() + Duration::from_secs(3600);
        let h = history(now, &c.history);
        let plan = decide(&c.policy, c.current, &pods(&c.loads), &h, now);
        assert_eq!(plan.replicas, c.want_replicas, "replicas, case: {}", c.name);
        assert_eq!(
            plan.recommended, c.want_recommended,
            "recommended, case: {}",
            c.name
        );
        assert_eq!(plan.victims, c.want_victims, "victims, case: {}", c.name);
        let want_direction = match c.want_replicas.cmp(&c.current) {
            std::cmp::Ordering::Greater => Direction::Up,
            std::cmp::Ordering::Less => Direction::Down,
            std::cmp::Ordering::Equal => Direction::Hold,
        };
        assert_eq!(
            plan.direction, want_direction,
            "direction, case: {}",
            c.name
        );
        assert!(!plan.reason.is_empty(), "reason, case: {}", c.name);
    }
}

/// Run `decide` every `period` over a load series, applying each plan and
/// recording each recommendation like the shells do. Returns the replica series.
fn simulate(policy: &Policy, start: i32, period: u64, totals: &[i64]) -> Vec<i32> {
    let t0 = Instant::now();
    let keep = policy.scale_up_window.max(policy.scale_down_window);
    let mut history = History::default();
    let mut replicas = start;
    let mut series = Vec::new();
    for (i, &total) in totals.iter().enumerate() {
        let now = t0 + Duration::from_secs(period * i as u64);
        let n = usize::try_from(replicas).unwrap_or(0);
        let per_pod = total / n.max(1) as i64;
        let loads: Vec<Option<i64>> = vec![Some(per_pod); n];
        let plan = decide(policy, replicas, &pods(&loads), &history, now);
        history.record(now, plan.recommended, keep);
        replicas = plan.replicas;
        series.push(replicas);
    }
    series
}

#[test]
fn flapping_load_does_not_flap_replicas() {
    // Load swings between 250 and 450 connections every 5 s for two minutes.
    let p = policy(1, 10, 0, 30, 1);
    let totals: Vec<i64> = (0..24)
        .map(|i| if i % 2 == 0 { 450 } else { 250 })
        .collect();
    let series = simulate(&p, 3, 5, &totals);
    assert_eq!(series[0], 5, "the first peak scales up at once: {series:?}");
    assert!(
        series.iter().all(|&r| r == 5),
        "replicas must stay at the peak's 5 while the load oscillates: {series:?}"
    );
}

#[test]
fn scale_down_waits_for_the_window_then_steps() {
    // 400 connections for 10 s, then nothing; 20 s down window, step 1, period 5 s.
    let p = policy(1, 10, 0, 20, 1);
    let mut totals = vec![400, 400];
    totals.extend(std::iter::repeat_n(0, 10));
    let series = simulate(&p, 1, 5, &totals);
    // t=0 up to 4; t=5 recommends 4 again (at target); from t=10 the
    // recommendation is 1, but the 4 of t=5 is within the 20 s window until
    // t=25, then one pod goes per step.
    assert_eq!(series, vec![4, 4, 4, 4, 4, 3, 2, 1, 1, 1, 1, 1]);
}

#[test]
fn history_forgets_what_is_older_than_keep() {
    let t0 = Instant::now();
    let mut h = History::default();
    for i in 0..10 {
        h.record(t0 + Duration::from_secs(i * 10), 1, Duration::from_secs(30));
    }
    // At t=90 entries at 60, 70, 80, 90 are within 30 s.
    assert_eq!(h.len(), 4);
}

#[test]
fn policy_from_spec_guards_against_degenerate_values() {
    let spec = AutoscalingSpec {
        enabled: true,
        min_replicas: 0,
        max_replicas: 0,
        target_connections_per_pod: 0,
        scale_up_stabilization_seconds: -5,
        scale_down_stabilization_seconds: 60,
        max_scale_in_step: 0,
        rebalance: Default::default(),
    };
    let p = Policy::from(&spec);
    assert_eq!(
        (
            p.min_replicas,
            p.max_replicas,
            p.target_connections_per_pod,
            p.max_scale_in_step
        ),
        (1, 1, 1, 1)
    );
    assert_eq!(p.scale_up_window, Duration::ZERO);
    assert_eq!(p.scale_down_window, Duration::from_secs(60));
}
