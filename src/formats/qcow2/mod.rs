//! qcow2 (QEMU's `docs/interop/qcow2.rst`): a one-pass writer for compat 0.10 (v2) and 1.1 (v3), compressed or
//! not, with 64 KiB clusters, and the project's own checker.
//!
//! - `header`: the header and the bit layout of table entries;
//! - `writer`: [`Qcow2Writer`], docs/formats.md "qcow2 one-pass layout", with exact refcounts;
//! - `deflate4k`: raw deflate limited to QEMU's 4 KiB window (vendored libdeflate);
//! - `check`: [`check`], which recomputes refcounts and inflates every compressed cluster.

pub mod check;
pub mod deflate4k;
pub mod header;
pub mod writer;

pub use check::check;
pub use writer::{Qcow2Writer, COMPRESSION_LEVEL};
