//! Custom resource types owned by this operator.
pub mod pushcluster;

pub use pushcluster::*;
