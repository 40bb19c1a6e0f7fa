//! TODO: telemetry (being written).
