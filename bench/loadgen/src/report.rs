//! The side-by-side Markdown: one row per figure, push-server, Node, the
//! ratio push-server / Node, the target and whether it is met.

use std::fmt::Write as _;

use crate::scenario::fanout::{FanoutResult, FanoutStep};
use crate::scenario::idle::IdleResult;
use crate::spec::Transport;
use crate::suite::SuiteResult;

/// Per-connection memory target, KiB.
pub const TARGET_KIB_PER_CONNECTION: f64 = 12.0;
pub const TARGET_CONNECTIONS: usize = 19_000;
pub const TARGET_FANOUT_RATIO: f64 = 3.0;
pub const TARGET_CROSS_P99_MS: f64 = 5.0;
pub const TARGET_POLLING_CLIENTS: usize = 30_000;

/// push / node, or "–" when either is missing or node is zero.
pub fn ratio(push: Option<f64>, node: Option<f64>) -> String {
    match (push, node) {
        (Some(p), Some(n)) if n != 0.0 => format!("{:.2}×", p / n),
        _ => "–".to_string(),
    }
}

fn cell(v: Option<f64>, decimals: usize) -> String {
    v.map_or("–".to_string(), |v| format!("{v:.decimals$}"))
}

fn verdict(met: Option<bool>) -> &'static str {
    match met {
        Some(true) => "met",
        Some(false) => "**not met**",
        None => "not measured",
    }
}

fn idle_at(r: &SuiteResult, size: usize, transport: Transport) -> Option<&IdleResult> {
    r.idle
        .iter()
        .find(|i| i.requested == size && i.transport == transport)
}

fn largest_held(r: &SuiteResult) -> Option<f64> {
    r.idle
        .iter()
        .filter(|i| i.transport == Transport::Websocket)
        .map(|i| i.open_after_hold.min(i.connected) as f64)
        .reduce(f64::max)
}

/// The remote node's latency in a cross-node run (node 1), else the overall one.
fn cross_p99(f: &FanoutResult) -> Option<f64> {
    let step = f.steps.first()?;
    Some(
        step.latency_by_node
            .get(1)
            .map_or(step.latency.p99_ms, |l| l.p99_ms),
    )
}

struct Row {
    figure: String,
    push: Option<f64>,
    node: Option<f64>,
    decimals: usize,
    target: String,
    met: Option<bool>,
}

pub fn render(push: &SuiteResult, node: &SuiteResult, machine: &str) -> String {
    let mut rows = Vec::new();
    for (size, transport) in push.idle.iter().map(|i| (i.requested, i.transport)) {
        let (p, n) = (
            idle_at(push, size, transport),
            idle_at(node, size, transport),
        );
        // The memory target is the WebSocket one; long-polling is reported beside it.
        let websocket = transport == Transport::Websocket;
        let kind = if websocket {
            "WebSocket"
        } else {
            "long-polling"
        };
        rows.push(Row {
            figure: format!("idle RSS per {kind} connection at {size} (KiB)"),
            push: p.map(|i| i.rss_per_connection_kib),
            node: n.map(|i| i.rss_per_connection_kib),
            decimals: 1,
            target: if websocket {
                format!("≤ {TARGET_KIB_PER_CONNECTION} KB")
            } else {
                "–".into()
            },
            met: p.filter(|_| websocket).map(|i| {
                i.connected == size && i.rss_per_connection_kib <= TARGET_KIB_PER_CONNECTION
            }),
        });
        rows.push(Row {
            figure: format!("idle server RSS with {size} {kind} connections (MiB)"),
            push: p.map(|i| i.rss_kib as f64 / 1024.0),
            node: n.map(|i| i.rss_kib as f64 / 1024.0),
            decimals: 1,
            target: "–".into(),
            met: None,
        });
    }
    let held = (largest_held(push), largest_held(node));
    rows.push(Row {
        figure: "WebSocket connections held on one node".into(),
        push: held.0,
        node: held.1,
        decimals: 0,
        target: format!("{TARGET_CONNECTIONS}"),
        met: held.0.map(|h| h >= TARGET_CONNECTIONS as f64),
    });
    let best = |r: &SuiteResult| r.fanout.as_ref().and_then(FanoutResult::best).cloned();
    let (pb, nb) = (best(push), best(node));
    let fan_ratio = pb
        .as_ref()
        .zip(nb.as_ref())
        .map(|(p, n)| p.delivered_per_s / n.delivered_per_s.max(1e-9));
    rows.push(Row {
        figure: "fan-out: delivered msgs/s, fastest step not overloaded".into(),
        push: pb.as_ref().map(|s| s.delivered_per_s),
        node: nb.as_ref().map(|s| s.delivered_per_s),
        decimals: 0,
        target: format!("≥ {TARGET_FANOUT_RATIO}× Node"),
        met: fan_ratio.map(|r| r >= TARGET_FANOUT_RATIO),
    });
    rows.push(Row {
        figure: "fan-out: server CPU per delivered message at that step (µs)".into(),
        push: pb.as_ref().map(|s| s.server_cpu_us_per_delivery),
        node: nb.as_ref().map(|s| s.server_cpu_us_per_delivery),
        decimals: 2,
        target: format!("≤ Node's / {TARGET_FANOUT_RATIO} (≥ {TARGET_FANOUT_RATIO}× per core)"),
        met: pb.as_ref().zip(nb.as_ref()).map(|(p, n)| {
            p.server_cpu_us_per_delivery * TARGET_FANOUT_RATIO <= n.server_cpu_us_per_delivery
        }),
    });
    rows.push(Row {
        figure:
            "fan-out: of which user space (µs; the rest is kernel TCP, loopback receive included)"
                .into(),
        push: pb.as_ref().map(|s| s.server_user_us_per_delivery),
        node: nb.as_ref().map(|s| s.server_user_us_per_delivery),
        decimals: 2,
        target: format!("≤ Node's / {TARGET_FANOUT_RATIO}"),
        met: pb.as_ref().zip(nb.as_ref()).map(|(p, n)| {
            p.server_user_us_per_delivery * TARGET_FANOUT_RATIO <= n.server_user_us_per_delivery
        }),
    });
    rows.push(Row {
        figure: "fan-out: p99 at each one's fastest step (ms)".into(),
        push: pb.as_ref().map(|s| s.latency.p99_ms),
        node: nb.as_ref().map(|s| s.latency.p99_ms),
        decimals: 2,
        target: "≤ Node's".into(),
        met: pb
            .as_ref()
            .zip(nb.as_ref())
            .map(|(p, n)| p.latency.p99_ms <= n.latency.p99_ms),
    });
    // The same load for both: the rate of Node's fastest step that held.
    let same_rate = nb.as_ref().map(|n| n.rate);
    let at_same = |r: &SuiteResult| {
        let rate = same_rate?;
        r.fanout.as_ref()?.at_rate(rate).cloned()
    };
    let (ps, ns) = (at_same(push), at_same(node));
    rows.push(Row {
        figure: format!(
            "fan-out: p99 at the same load ({} publishes/s, Node's fastest step) (ms)",
            same_rate.map_or("–".to_string(), |r| format!("{r:.0}"))
        ),
        push: ps.as_ref().map(|s| s.latency.p99_ms),
        node: ns.as_ref().map(|s| s.latency.p99_ms),
        decimals: 2,
        target: "≤ Node's".into(),
        met: ps
            .as_ref()
            .zip(ns.as_ref())
            .map(|(p, n)| !p.overloaded && p.latency.p99_ms <= n.latency.p99_ms),
    });
    let cross = (
        push.cross_node.as_ref().and_then(cross_p99),
        node.cross_node.as_ref().and_then(cross_p99),
    );
    rows.push(Row {
        figure: "cross-node p99, clients on the other node (ms)".into(),
        push: cross.0,
        node: cross.1,
        decimals: 2,
        target: format!("≤ {TARGET_CROSS_P99_MS} ms"),
        met: cross.0.map(|p| p <= TARGET_CROSS_P99_MS),
    });
    let polling = |r: &SuiteResult| r.polling.as_ref().map(|p| p.max_clients_passing as f64);
    let (pp, np) = (polling(push), polling(node));
    rows.push(Row {
        figure: "long-polling clients on one node with p99 < 1 s".into(),
        push: pp,
        node: np,
        decimals: 0,
        target: format!("≥ {TARGET_POLLING_CLIENTS}"),
        met: pp.map(|p| p >= TARGET_POLLING_CLIENTS as f64),
    });

    let mut out = String::new();
    let _ = writeln!(out, "## Summary\n");
    let _ = writeln!(
        out,
        "| figure | push-server | Node | push-server / Node | target | |"
    );
    let _ = writeln!(out, "| --- | ---: | ---: | ---: | --- | --- |");
    for r in &rows {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} |",
            r.figure,
            cell(r.push, r.decimals),
            cell(r.node, r.decimals),
            ratio(r.push, r.node),
            r.target,
            // A figure without a target is reported, not judged.
            if r.target == "–" {
                "–"
            } else {
                verdict(r.met)
            }
        );
    }
    for (title, p, n) in [
        ("Fan-out steps", push.fanout.as_ref(), node.fanout.as_ref()),
        (
            "Cross-node steps",
            push.cross_node.as_ref(),
            node.cross_node.as_ref(),
        ),
    ] {
        let _ = writeln!(out, "\n## {title}\n");
        let _ = writeln!(
            out,
            "| server | nodes | clients | rooms | publishes/s (achieved) | delivered msgs/s | p50 ms | p99 ms | p999 ms | p99 per node ms | expected | lost | CPU server / generator | server µs/delivery (user) |"
        );
        let _ = writeln!(
            out,
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: |"
        );
        for (name, f) in [("push-server", p), ("Node", n)] {
            for f in f.into_iter() {
                for s in &f.steps {
                    step_row(&mut out, name, f, s);
                }
            }
        }
    }
    let _ = writeln!(out, "\n## Long-polling steps\n");
    let _ = writeln!(
        out,
        "| server | clients | connected | server RSS MiB | p50 ms | p99 ms | expected | lost | CPU server / generator | pass |"
    );
    let _ = writeln!(
        out,
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
    );
    for (name, r) in [("push-server", push), ("Node", node)] {
        for s in r.polling.iter().flat_map(|p| &p.steps) {
            let _ = writeln!(
                out,
                "| {name} | {} | {} | {:.1} | {:.1} | {:.1} | {} | {} | {:.0}% / {:.0}% | {} |",
                s.clients,
                s.connected,
                s.rss_kib as f64 / 1024.0,
                s.fanout.latency.p50_ms,
                s.fanout.latency.p99_ms,
                s.fanout.expected,
                s.fanout.lost,
                s.fanout.server_cpu_pct,
                s.fanout.generator_cpu_pct,
                if s.passed { "yes" } else { "no" }
            );
        }
    }
    let _ = writeln!(out, "\n## Errors seen\n");
    for (name, r) in [("push-server", push), ("Node", node)] {
        let errors: Vec<&String> = r
            .idle
            .iter()
            .flat_map(|i| &i.first_errors)
            .chain(r.fanout.iter().flat_map(|f| &f.first_errors))
            .chain(r.cross_node.iter().flat_map(|f| &f.first_errors))
            .chain(r.polling.iter().flat_map(|p| &p.first_errors))
            .take(5)
            .collect();
        let _ = writeln!(
            out,
            "- {name}: {}",
            if errors.is_empty() {
                "none".to_string()
            } else {
                format!("{errors:?}")
            }
        );
    }
    let _ = writeln!(out, "\n## Machine and run\n\n```\n{}\n```", machine.trim());
    out
}

fn step_row(out: &mut String, name: &str, f: &FanoutResult, s: &FanoutStep) {
    let per_node: Vec<String> = s
        .latency_by_node
        .iter()
        .map(|l| format!("{:.2}", l.p99_ms))
        .collect();
    let _ = writeln!(
        out,
        "| {name} | {} | {} | {} | {} ({:.0}) | {:.0} | {:.2} | {:.2} | {:.2} | {} | {} | {}{} | {:.0}% / {:.0}% | {:.2} ({:.2}) |",
        f.nodes,
        f.connected,
        f.rooms,
        s.rate,
        s.achieved_rate,
        s.delivered_per_s,
        s.latency.p50_ms,
        s.latency.p99_ms,
        s.latency.p999_ms,
        per_node.join(" / "),
        s.expected,
        s.lost,
        if s.overloaded { " (overloaded)" } else { "" },
        s.server_cpu_pct,
        s.generator_cpu_pct,
        s.server_cpu_us_per_delivery,
        s.server_user_us_per_delivery
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::launch::ServerKind;
    use crate::stats::Latency;

    #[test]
    fn ratio_table() {
        let cases = [
            ("normal", Some(30.0), Some(10.0), "3.00×"),
            ("node zero", Some(1.0), Some(0.0), "–"),
            ("push missing", None, Some(1.0), "–"),
        ];
        for (name, p, n, want) in cases {
            assert_eq!(ratio(p, n), want, "case {name}");
        }
    }

    fn suite(server: ServerKind, kib: f64, delivered: f64, p99: f64) -> SuiteResult {
        let step = FanoutStep {
            delivered_per_s: delivered,
            // Server CPU per delivery scales inversely with throughput here.
            server_cpu_us_per_delivery: 1000.0 / delivered,
            server_user_us_per_delivery: 400.0 / delivered,
            latency: Latency {
                p99_ms: p99,
                ..Default::default()
            },
            ..Default::default()
        };
        SuiteResult {
            server,
            redis: false,
            history_max_messages: 0,
            redis_replicas: 0,
            idle: vec![
                IdleResult {
                    requested: 1000,
                    connected: 1000,
                    open_after_hold: 1000,
                    rss_per_connection_kib: kib,
                    ..Default::default()
                },
                // Long-polling: reported beside, not held to the WebSocket target, and
                // not counted as WebSocket connections held.
                IdleResult {
                    requested: 2000,
                    transport: Transport::Polling,
                    connected: 2000,
                    open_after_hold: 2000,
                    rss_per_connection_kib: kib * 2.0,
                    ..Default::default()
                },
            ],
            fanout: Some(FanoutResult {
                steps: vec![step],
                ..Default::default()
            }),
            cross_node: None,
            polling: None,
        }
    }

    #[test]
    fn render_states_targets_honestly() {
        let md = render(
            &suite(ServerKind::Push, 8.0, 200.0, 3.0),
            &suite(ServerKind::Node, 20.0, 100.0, 2.0),
            "nproc 2",
        );
        assert!(md.contains("| idle RSS per WebSocket connection at 1000 (KiB) | 8.0 | 20.0 | 0.40× | ≤ 12 KB | met |"), "{md}");
        assert!(
            md.contains(
                "| idle RSS per long-polling connection at 2000 (KiB) | 16.0 | 40.0 | 0.40× | – | – |"
            ),
            "{md}"
        );
        assert!(md.contains("| fan-out: delivered msgs/s, fastest step not overloaded | 200 | 100 | 2.00× | ≥ 3× Node | **not met** |"), "{md}");
        assert!(
            md.contains(
                "| fan-out: p99 at each one's fastest step (ms) | 3.00 | 2.00 | 1.50× | ≤ Node's | **not met** |"
            ),
            "{md}"
        );
        assert!(md.contains("| fan-out: p99 at the same load (0 publishes/s, Node's fastest step) (ms) | 3.00 | 2.00 | 1.50× | ≤ Node's | **not met** |"), "{md}");
        assert!(md.contains("cross-node p99, clients on the other node (ms) | – | – | – | ≤ 5 ms | not measured |"), "{md}");
        assert!(md.contains("WebSocket connections held on one node | 1000 | 1000 | 1.00× | 19000 | **not met** |"), "{md}");
        assert!(
            md.contains("| fan-out: server CPU per delivered message at that step (µs) | 5.00 | 10.00 | 0.50× | ≤ Node's / 3 (≥ 3× per core) | **not met** |"),
            "{md}"
        );
        assert!(
            md.contains("| fan-out: of which user space (µs; the rest is kernel TCP, loopback receive included) | 2.00 | 4.00 | 0.50× | ≤ Node's / 3 | **not met** |"),
            "{md}"
        );
        assert!(
            md.contains(
                "| expected | lost | CPU server / generator | server µs/delivery (user) |\n| --- |"
            ),
            "{md}"
        );
        assert!(md.contains("| lost | CPU server / generator | pass |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"), "{md}");
        assert!(md.contains("nproc 2"));
    }
}
