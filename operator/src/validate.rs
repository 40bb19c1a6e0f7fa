//! TODO: validate (being written).
