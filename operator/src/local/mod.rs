//! Local mode (being written).
