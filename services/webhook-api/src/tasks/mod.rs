//! The instance's background loops, each given only the handles it needs (`startup` starts
//! them): the console's search indexes and bulk replays, the file copies, the follow-ups of finished trainings, the late announcer, the
//! reconciler, retention, deploys, GitHub's redelivery and the spool's drain.

mod backoff;
pub mod console_indexes;
pub mod console_replays;
pub mod deploy;
pub mod followups;
pub mod github;
pub mod late_announcer;
pub mod reconciler;
pub mod retention;
pub mod spool_drain;
pub mod worker;
