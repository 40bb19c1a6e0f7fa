//! TODO: metrics (being written).
