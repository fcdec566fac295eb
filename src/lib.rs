//! The stemcell builder. Data flows one way through these modules, in this order:
//! recipe → stage/rootfs → disk → formats → stemcell → boot (a consumer of finished
//! stemcells). A module never calls one before it.
pub mod boot;
pub mod build;
pub mod disk;
pub mod formats;
pub mod imagetest;
pub mod output;
pub mod parallel;
pub mod planning;
pub mod progress;
pub mod recipe;
pub mod rootfs;
pub mod stage;
pub mod stemcell;
pub mod tar_errors;
