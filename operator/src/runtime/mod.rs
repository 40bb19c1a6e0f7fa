//! Process wiring of `push-operator run`: the controller and its watches, the
//! admin server (`/metrics`, `/healthz`, `/readyz`), leader election, shutdown.
//! The decisions live in [`crate::controller`]; this is only the shell around it.

pub mod leader;
pub mod run;
