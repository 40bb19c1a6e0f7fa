//! pushcluster operator: turns a `PushCluster` into push-server pods, a Redis
//! that links them, sticky exposure and connection-based autoscaling.
//!
//! Layout (one concern per module):
//! - [`resources`]: the `PushCluster` CRD types.
//! - [`manifest`]: the one front door for manifest files (`render`, `local`).
//! - [`validate`]: spec → `ValidatedCluster`, the only input the builders accept.
//! - [`objects`]: pure builders of the Kubernetes objects a PushCluster owns, one per family.
//! - [`controller`]: the reconcile pipeline (dereference → validate → build → apply → status).
//! - [`runtime`]: `push-operator run`'s process wiring (watches, admin server, leader election).
//! - [`events`]: every Event reason the operator emits, and the one Event builder.
//! - [`autoscale`]: connection-count autoscaling (pure decision + scrape + scale-in).
//! - [`local`]: local mode, the same plan run as processes on one machine.
//! - [`render`]: `push-operator render`, the desired objects as a YAML stream.
//! - [`metrics`], [`telemetry`]: the operator's own observability.

pub mod autoscale;
pub mod controller;
pub mod events;
#[cfg(test)]
pub mod fixtures;
pub mod local;
pub mod manifest;
pub mod metrics;
pub mod objects;
pub mod render;
pub mod resources;
pub mod runtime;
pub mod telemetry;
pub mod validate;
