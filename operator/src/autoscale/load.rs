//! What one autoscaling step measured: each pod's live connections, and their sum.
//! Below the decision, the scrape and the scale-in choice, which all use it.

/// One ready pod and what its connection gauge said (`None` = no answer in time).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodLoad {
    pub name: String,
    pub connections: Option<i64>,
}

impl PodLoad {
    pub fn measured(name: &str, connections: i64) -> Self {
        Self {
            name: name.to_string(),
            connections: Some(connections),
        }
    }
    pub fn unmeasured(name: &str) -> Self {
        Self {
            name: name.to_string(),
            connections: None,
        }
    }
}

/// What one step measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Measurement {
    /// Connections summed over the pods that answered.
    pub total: i64,
    pub pods_measured: i32,
    pub pods_unmeasured: i32,
}

impl Measurement {
    pub fn of(pods: &[PodLoad]) -> Self {
        let measured = pods.iter().filter_map(|p| p.connections);
        Self {
            total: measured.clone().fold(0i64, i64::saturating_add),
            pods_measured: count(measured.count()),
            pods_unmeasured: count(pods.iter().filter(|p| p.connections.is_none()).count()),
        }
    }
}

pub(crate) fn count(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}
