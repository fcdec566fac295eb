//! Stage actions, build inputs, and the runner that executes a plan's stages in a chroot, one
//! cached overlay layer per stage.
pub mod actions;
pub mod inputs;
pub mod runner;
