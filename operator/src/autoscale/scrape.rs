//! Reading each ready pod's connection gauge.
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
use push_contract::{metrics::CONNECTIONS, paths::METRICS};
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

/// A pod to scrape: its name and the full URL of its metrics endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScrapeTarget {
    pub name: String,
    pub url: String,
}

impl ScrapeTarget {
    pub fn new(name: &str, addr: SocketAddr) -> Self {
        Self {
            name: name.to_string(),
            url: format!("http://{addr}{METRICS}"),
        }
    }
}

/// The pods worth scraping: running, Ready, not terminating, with an IP.
/// Pods that are not ready take no new clients (a draining pod is not ready),
/// so their connections are leaving and do not count towards the load.
pub fn targets_from_pods(pods: &[Pod], admin_port: u16) -> Vec<ScrapeTarget> {
    pods.iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| {
            let name = p.metadata.name.as_deref()?;
            let status = p.status.as_ref()?;
            let ready = status
                .conditions
                .as_ref()?
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            let ip: IpAddr = status.pod_ip.as_deref()?.parse().ok()?;
            ready.then(|| ScrapeTarget::new(name, SocketAddr::new(ip, admin_port)))
        })
        .collect()
}

/// Sum of the connection gauge over its label sets (transports).
pub fn parse_connections(text: &str) -> Result<i64, ScrapeError> {
    let mut total: Option<f64> = None;
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some(rest) = line.strip_prefix(CONNECTIONS) else {
            continue;
        };
        // `push_connections_foo` is another metric; the name ends at `{` or a space.
        let after_labels = match rest.chars().next() {
            Some('{') => skip_labels(rest).ok_or_else(|| bad(line, "unclosed label set"))?,
            Some(' ') | Some('\t') => rest,
            _ => continue,
        };
        let value = after_labels
            .split_whitespace()
            .next()
            .ok_or_else(|| bad(line, "no value"))?;
        let value: f64 = value
            .parse()
            .map_err(|_| bad(line, "value is not a number"))?;
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

/// Scrape one pod.
pub async fn scrape(client: &reqwest::Client, url: &str) -> Result<i64, ScrapeError> {
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
    parse_connections(&String::from_utf8_lossy(&body))
}

/// Scrape every target at once, each bounded by `timeout`; failures become
/// unmeasured pods and are logged, never returned as an error.
pub async fn scrape_all(
    client: &reqwest::Client,
    targets: &[ScrapeTarget],
    timeout: Duration,
) -> Vec<PodLoad> {
    join_all(targets.iter().map(|t| async move {
        let result = match tokio::time::timeout(timeout, scrape(client, &t.url)).await {
            Ok(r) => r,
            Err(_) => Err(ScrapeError::Timeout(timeout)),
        };
        let connections = match result {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(pod = %t.name, url = %t.url, error = %e, "connection gauge not read; pod counted as unmeasured");
                None
            }
        };
        PodLoad {
            name: t.name.clone(),
            connections,
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
