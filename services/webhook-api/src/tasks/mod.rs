//! The instance's background loops, each given only the handles it needs. (Moving here one at a
//! time: the spool's drain first, so the spool itself no longer depends on the ingest path.)

pub mod spool_drain;
