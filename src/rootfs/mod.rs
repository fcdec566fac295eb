//! The root filesystem: bootstrap, chroot sessions in private namespaces, the layer cache,
//! export of the OS image tarball, host tool checks.
pub mod bootstrap;
pub mod cache;
pub mod chroot;
pub mod emulation;
pub mod export;
pub mod host_tools;
pub mod interrupt;
pub mod layers;
pub mod merged;
pub mod os_release;
