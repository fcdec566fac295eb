//! VMDK streamOptimized: the disk vSphere imports from an OVF (`application/x-vnd.vmware-streamVmdk`).
//! Byte layouts: VMware's "Virtual Disk Format 5.0" technote; choices: docs/formats.md "VMDK grains".
//!
//! - [`layout`]: the sparse extent header, markers and the embedded descriptor.
//! - [`write`]: [`VmdkWriter`], a pure stream (grains, then GTs, GD, footer, EOS) compressed on all cores.
//! - [`check`]: [`check`], our own reader that inflates every grain.

mod check;
pub mod layout;
mod write;

pub use check::check;
pub use write::{write_stream, StreamInfo, VmdkWriter};
