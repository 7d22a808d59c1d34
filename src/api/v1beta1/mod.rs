//! Version v1beta1: served and stored, the hub of conversion. One name per concept, RFC 3339
//! times, closed enums, CEL rules for cross-field constraints, an `execution` block.

mod backup;
mod backup_validation;
mod common;
mod offset_reset;
mod offset_rollback;
mod restore;

pub use backup::*;
pub use backup_validation::*;
pub use common::*;
pub use offset_reset::*;
pub use offset_rollback::*;
pub use restore::*;
