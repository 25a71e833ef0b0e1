//! The commands an operator runs: their command line (`args`) and their bodies; `main` only
//! wires them to a runtime.

pub mod args;
pub mod check_config;
pub mod cluster_report;
pub mod forget;
pub mod healthcheck;
pub mod jobs;
pub mod retention;
pub mod send_test;

/// The configuration, or its one problem on stderr (the caller exits 2).
pub fn configured<T>(loaded: Result<T, crate::config::ConfigError>) -> Option<T> {
    loaded.inspect_err(|e| eprintln!("webhook-api: {e}")).ok()
}
