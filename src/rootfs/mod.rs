//! The root filesystem: bootstrap, chroot sessions in private namespaces, host tool checks.
pub mod chroot;
