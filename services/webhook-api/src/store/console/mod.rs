//! The operators' console's reads and writes, by owner: its sessions, finding deliveries
//! among millions, what one delivery caused, its indexes, bulk replays, and the operations
//! page and charts. (The audit log it lists is `store::audit`'s.)

mod bulk_replays;
mod consequences;
mod indexes;
mod operations;
mod search;
mod sessions;

pub use super::audit::{list as audit, AuditRow};
pub use bulk_replays::*;
pub use consequences::*;
pub use indexes::*;
pub use operations::*;
pub use search::*;
pub use sessions::*;
