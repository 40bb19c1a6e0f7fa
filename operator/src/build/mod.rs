//! Pure builders, one module per family of owned objects (being written).
