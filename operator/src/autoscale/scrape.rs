//! Reading each pod's connection gauge (ready pods: the load) and its Redis link
//! (every running pod: whether the pods reach Redis, and which primary).
//!
//! Every pod is scraped concurrently with one bounded timeout (connect, headers
//! and body together), so a pod that hangs costs the step at most that timeout
//! and never blocks the others. A pod that fails in any way is reported as
//! unmeasured (`connections: None`); the decision decides how it counts.
//!
//! The Prometheus text is parsed by a small parser for the one gauge needed
//! ([`parse_connections`]) instead of `prometheus-parse`: that crate pulls
//! chrono, regex and itertools and splits labels on `,`/`=` without honouring
//! quotes; the sample line grammar needed here is a few lines and table-tested.

use super::load::PodLoad;
use futures::future::join_all;
use k8s_openapi::api::core::v1::Pod;
use push_contract::{
    metrics::{ADDRESS, CONNECTIONS, REDIS_LAST_FAILOVER, REDIS_PRIMARY, REDIS_UP},
    paths::METRICS,
};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// How long one pod may take to answer, all pods being scraped at once.
pub const SCRAPE_TIMEOUT: Duration = Duration::from_secs(1);
/// Largest /metrics body read; a bigger answer counts as no answer.
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// Why one pod's gauge could not be read.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ScrapeError {
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("request failed: {0}")]
    Http(String),
    #[error("HTTP status {0}")]
    Status(u16),
    #[error("/metrics body larger than {MAX_BODY_BYTES} bytes")]
    TooLarge,
    #[error("metric {CONNECTIONS} not found")]
    MissingMetric,
    #[error("bad sample line {line:?}: {why}")]
    BadSample { line: String, why: &'static str },
}

/// A pod to scrape: its name, the full URL of its metrics endpoint, and whether it
/// is Ready.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScrapeTarget {
    pub name: String,
    pub url: String,
    pub ready: bool,
}

impl ScrapeTarget {
    /// A Ready pod.
    pub fn new(name: &str, addr: SocketAddr) -> Self {
        Self {
            name: name.to_string(),
            url: format!("http://{addr}{METRICS}"),
            ready: true,
        }
    }
}

/// The pods worth scraping: not terminating, with an IP. Only the Ready ones count
/// towards the load (a pod that is not ready takes no new clients: a draining pod's
/// connections are leaving); every one tells whether it reaches Redis (a pod that does
/// not is not ready).
pub fn targets_from_pods(pods: &[Pod], admin_port: u16) -> Vec<ScrapeTarget> {
    pods.iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| {
            let name = p.metadata.name.as_deref()?;
            let status = p.status.as_ref()?;
            let ready = status
                .conditions
                .iter()
                .flatten()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            let ip: IpAddr = status.pod_ip.as_deref()?.parse().ok()?;
            Some(ScrapeTarget {
                ready,
                ..ScrapeTarget::new(name, SocketAddr::new(ip, admin_port))
            })
        })
        .collect()
}

/// What one pod's metrics say about its Redis link (absent: a pod without Redis).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodRedis {
    pub up: bool,
    /// `host:port` of the primary it uses.
    pub primary: Option<String>,
    /// Unix seconds of its last move to a new primary.
    pub last_failover: Option<i64>,
}

/// One scraped pod: its load (counted only when Ready) and its Redis link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scraped {
    pub load: PodLoad,
    pub ready: bool,
    pub redis: Option<PodRedis>,
}

/// The loads of the Ready pods.
pub fn ready_loads(scraped: &[Scraped]) -> Vec<PodLoad> {
    scraped
        .iter()
        .filter(|s| s.ready)
        .map(|s| s.load.clone())
        .collect()
}

/// The Redis link as every pod that answered sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RedisLinks {
    /// Pods that reported a Redis link, and of those the ones it is up for.
    pub pods: i32,
    pub up: i32,
    /// The primary most linked pods use.
    pub primary: Option<String>,
    /// The latest failover any pod followed, Unix seconds.
    pub last_failover: Option<i64>,
}

impl RedisLinks {
    pub fn of(scraped: &[Scraped]) -> Self {
        let reports: Vec<&PodRedis> = scraped.iter().filter_map(|s| s.redis.as_ref()).collect();
        let mut votes: std::collections::BTreeMap<&str, usize> = Default::default();
        for primary in reports
            .iter()
            .filter(|r| r.up)
            .filter_map(|r| r.primary.as_deref())
        {
            *votes.entry(primary).or_default() += 1;
        }
        Self {
            pods: super::load::count(reports.len()),
            up: super::load::count(reports.iter().filter(|r| r.up).count()),
            primary: votes
                .into_iter()
                .max_by_key(|(_, n)| *n)
                .map(|(p, _)| p.to_owned()),
            last_failover: reports.iter().filter_map(|r| r.last_failover).max(),
        }
    }
}

/// The Redis lines of a pod's metrics: `None` when it reports no link (no Redis).
pub fn parse_redis(text: &str) -> Option<PodRedis> {
    let mut up = None;
    let mut primary = None;
    let mut last_failover = None;
    for line in text.lines().map(str::trim) {
        if line.starts_with('#') {
            continue;
        }
        let Some((name, rest)) = split_name(line) else {
            continue;
        };
        let Ok((labels, value)) = labels_and_value(rest) else {
            continue;
        };
        if !value.is_finite() {
            continue;
        }
        match name {
            REDIS_UP => up = Some(value >= 1.0),
            REDIS_PRIMARY if value >= 1.0 => primary = label(labels, ADDRESS),
            // A counter's zero value says "never"; whole seconds are enough.
            REDIS_LAST_FAILOVER if value > 0.0 => last_failover = Some(value as i64),
            _ => {}
        }
    }
    Some(PodRedis {
        up: up?,
        primary,
        last_failover,
    })
}

/// A sample line's metric name and what follows it (`{labels} value` or ` value`);
/// `None` when nothing follows the name. `push_connections_foo` is another metric: the
/// name ends at `{` or a space.
fn split_name(line: &str) -> Option<(&str, &str)> {
    let end = line.find(['{', ' ', '\t'])?;
    Some(line.split_at(end))
}

/// The labels (between the braces; empty when there are none) and the value of what
/// follows a metric name, or why they cannot be read.
fn labels_and_value(rest: &str) -> Result<(&str, f64), &'static str> {
    let (labels, after) = if rest.starts_with('{') {
        let after = skip_labels(rest).ok_or("unclosed label set")?;
        (&rest[1..rest.len() - after.len() - 1], after)
    } else {
        ("", rest)
    };
    let value = after.split_whitespace().next().ok_or("no value")?;
    let value = value.parse().map_err(|_| "value is not a number")?;
    Ok((labels, value))
}

/// The value of label `key` in `a="x",b="y"` (escapes kept as they are: addresses
/// have none).
fn label(labels: &str, key: &str) -> Option<String> {
    let start = labels.find(&format!("{key}=\""))? + key.len() + 2;
    let len = labels[start..].find('"')?;
    Some(labels[start..start + len].to_owned())
}

/// Sum of the connection gauge over its label sets (transports).
pub fn parse_connections(text: &str) -> Result<i64, ScrapeError> {
    let mut total: Option<f64> = None;
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((CONNECTIONS, rest)) = split_name(line) else {
            continue;
        };
        let (_, value) = labels_and_value(rest).map_err(|why| bad(line, why))?;
        if !value.is_finite() || value < 0.0 {
            return Err(bad(line, "value is not a finite non-negative number"));
        }
        total = Some(total.unwrap_or(0.0) + value);
    }
    let total = total.ok_or(ScrapeError::MissingMetric)?;
    Ok(if total >= i64::MAX as f64 {
        i64::MAX
    } else {
        total as i64
    })
}

fn bad(line: &str, why: &'static str) -> ScrapeError {
    ScrapeError::BadSample {
        line: line.chars().take(200).collect(),
        why,
    }
}

/// Skip `{...}` honouring quoted label values with `\"` escapes; returns what follows.
fn skip_labels(s: &str) -> Option<&str> {
    let mut in_quotes = false;
    let mut escaped = false;
    for (i, ch) in s.char_indices().skip(1) {
        match (in_quotes, escaped, ch) {
            (true, true, _) => escaped = false,
            (true, false, '\\') => escaped = true,
            (_, false, '"') => in_quotes = !in_quotes,
            (false, _, '}') => return Some(&s[i + 1..]),
            _ => {}
        }
    }
    None
}

/// Scrape one pod: its connections, and its Redis link.
pub async fn scrape(
    client: &reqwest::Client,
    url: &str,
) -> Result<(i64, Option<PodRedis>), ScrapeError> {
    let mut response = client
        .get(url)
        .send()
        .await
        .map_err(|e| ScrapeError::Http(e.to_string()))?;
    if !response.status().is_success() {
        return Err(ScrapeError::Status(response.status().as_u16()));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| ScrapeError::Http(e.to_string()))?
    {
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(ScrapeError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    let text = String::from_utf8_lossy(&body);
    Ok((parse_connections(&text)?, parse_redis(&text)))
}

/// Scrape every target at once, each bounded by `timeout`; failures become
/// unmeasured pods and are logged, never returned as an error.
pub async fn scrape_all(
    client: &reqwest::Client,
    targets: &[ScrapeTarget],
    timeout: Duration,
) -> Vec<Scraped> {
    join_all(targets.iter().map(|t| async move {
        let result = match tokio::time::timeout(timeout, scrape(client, &t.url)).await {
            Ok(r) => r,
            Err(_) => Err(ScrapeError::Timeout(timeout)),
        };
        let (connections, redis) = match result {
            Ok((c, redis)) => (Some(c), redis),
            Err(e) => {
                tracing::warn!(pod = %t.name, url = %t.url, error = %e, "metrics not read; pod counted as unmeasured");
                (None, None)
            }
        };
        Scraped {
            load: PodLoad {
                name: t.name.clone(),
                connections,
            },
            ready: t.ready,
            redis,
        }
    }))
    .await
}

/// An HTTP client for scraping: no proxy from the environment (pod IPs are
/// cluster-internal), and the same bound as [`scrape_all`] on connecting.
pub fn client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .connect_timeout(timeout)
        .build()
        .unwrap_or_default()
}

#[cfg(test)]
mod tests;
