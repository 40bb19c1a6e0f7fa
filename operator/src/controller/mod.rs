//! The reconcile pipeline (being written).
