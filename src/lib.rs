//! The stemcell builder. Data flows one way through these modules, in this order:
//! recipe → stage/rootfs → disk → formats → stemcell → boot (a consumer of finished
//! stemcells). A module never calls one before it.
pub mod output;
pub mod progress;
pub mod parallel;
pub mod recipe;
pub mod stage;
pub mod imagetest;
pub mod rootfs;
pub mod disk;
pub mod formats;
pub mod stemcell;
pub mod build;
pub mod planning;
pub mod boot;
