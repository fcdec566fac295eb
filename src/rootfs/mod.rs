//! The root filesystem: bootstrap, chroot sessions in private namespaces, the layer cache,
//! export of the OS image tarball, host tool checks.
pub mod bootstrap;
pub mod chroot;
pub mod export;
pub mod host_tools;
pub mod interrupt;
pub mod layers;
pub mod merged;
pub mod os_release;
pub mod cache;
pub mod emulation;
