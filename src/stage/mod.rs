//! Stage actions and the runner that executes a plan's stages in a chroot.
pub mod inputs;
