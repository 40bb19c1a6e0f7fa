//! Connection-count autoscaling (being written).
