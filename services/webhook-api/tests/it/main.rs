//! Integration tests: the real app against the real PostgreSQL and Redis that
//! `scripts/dev/deps.sh` starts. One binary, so the build is linked once.

mod avatar_status;
mod backup;
mod bad_input;
mod batch;
mod bot_schema;
mod cdn;
mod console;
mod deploy;
mod failover;
mod files;
mod followups;
mod forget;
mod github_redelivery;
mod hardening;
mod helpers;
mod lifecycle;
mod monitoring;
mod openapi;
mod operator_commands;
mod reconcile;
mod resilience;
mod retention;
mod settings;
mod sources;
mod spool;
mod status_command;
mod status_update;
#[path = "../support/mod.rs"]
mod support;
mod verification;
