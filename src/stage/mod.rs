//! Stage actions and the runner that executes a plan's stages in a chroot, one cached overlay
//! layer per stage.
pub mod actions;
pub mod runner;
