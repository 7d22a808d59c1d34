//! Version v1alpha1: served, not stored. The compatibility surface: every field and spelling of
//! the documented prior art, pre-1.0 and v1.0.0 names side by side.

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
