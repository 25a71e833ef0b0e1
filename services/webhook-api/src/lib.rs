//! The webhook API: FAL training callbacks in, one committed avatar change out.
//!
//! The path of one webhook: `http` (read, limits) → `verify` (signature on the raw bytes) →
//! `fal` (parse) → `ingest` → `store::ingest` (one transaction, using the `avatar` state
//! machine) → `cache` (Redis status and events stream, after commit). A completion also
//! enqueues a file job, which `tasks::worker` (in every instance) copies from FAL's CDN into S3
//! through `files`. A finished training records its follow-ups in the same statement:
//! `tasks::followups` tells the owner in Telegram (`telegram`) and removes the training photos,
//! as the bot's own webhook path did.
//!
//! The other signed senders (`http::webhooks`, one file each in `senders`) are stored by
//! `store::deliveries` and announced on a stream per source; a verified push may queue a
//! deploy, which `tasks::deploy` runs. Those whose senders never retry wait in `spool` (on
//! disk) while PostgreSQL is unavailable. `http::operator` is the operators' view of all
//! deliveries.
//!
//! Rooms: the domain (`fal`, `avatar`), the adapters (`store`, `cache`, `files`, `spool`,
//! `telegram`, `fal_queue`, `verify`, `senders`), the request path (`http`, `ingest`), the background
//! loops (`tasks`), the commands' bodies (`cli`), and the wiring (`config`, `state`,
//! `startup`).

pub mod avatar;
pub mod cache;
pub mod cli;
pub mod config;
pub mod fal;
pub mod fal_queue;
pub mod files;
pub mod http;
pub mod ingest;
pub mod limits;
pub mod live_tails;
pub mod metrics;
pub mod secret;
pub mod senders;
pub mod spool;
pub mod startup;
pub mod state;
pub mod store;
pub mod tasks;
pub mod telegram;
pub mod telemetry;
pub mod verify;

#[cfg(test)]
mod structure_tests;
