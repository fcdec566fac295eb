//! libdeflate's compressor, patched and built twice from vendor/libdeflate (see its README.md):
//! - [`Build::Window4k`]: matches reach back at most 4 KiB, for qcow2 clusters (QEMU inflates
//!   them with windowBits −12; libdeflate has no runtime option for the window);
//! - [`Build::SyncEnd`]: the normal 32 KiB window, but no block is final and the stream ends
//!   byte-aligned with an empty stored block (zlib's Z_SYNC_FLUSH), so that pieces compressed
//!   on different cores concatenate into one DEFLATE stream (the parallel gzip writer).
//!
//! libdeflate compresses about 1.4 times as fast as zlib at the same level, and smaller.

use anyhow::{bail, Result};
use std::ffi::c_void;
use std::ptr::NonNull;

/// libdeflate's opaque `struct libdeflate_compressor`.
#[repr(C)]
struct RawCompressor {
    _opaque: [u8; 0],
}

// The vendored libdeflate 1.26 API, renamed per build (see deflate4k.c and deflate_sync.c).
extern "C" {
    fn deflate4k_alloc_compressor(level: i32) -> *mut RawCompressor;
    fn deflate4k_deflate_compress(
        c: *mut RawCompressor,
        input: *const c_void,
        in_nbytes: usize,
        out: *mut c_void,
        out_nbytes_avail: usize,
    ) -> usize;
    fn deflate4k_free_compressor(c: *mut RawCompressor);
    fn deflate_sync_alloc_compressor(level: i32) -> *mut RawCompressor;
    fn deflate_sync_deflate_compress(
        c: *mut RawCompressor,
        input: *const c_void,
        in_nbytes: usize,
        out: *mut c_void,
        out_nbytes_avail: usize,
    ) -> usize;
    fn deflate_sync_free_compressor(c: *mut RawCompressor);
}

/// Which patched build of libdeflate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Build {
    /// 4 KiB match window, streams ending with a final block.
    Window4k,
    /// 32 KiB match window, streams ending non-final and byte-aligned.
    SyncEnd,
}

/// One compressor (at most 0.6 MB at levels 1 to 9, 8.9 MB at 10 to 12, mostly matchfinder
/// tables); not shareable between threads, so keep one per thread.
pub struct Compressor {
    raw: NonNull<RawCompressor>,
    build: Build,
    level: i32,
}

// SAFETY: a libdeflate compressor is plain memory with no thread affinity; `&mut self` on
// every use keeps it to one thread at a time.
unsafe impl Send for Compressor {}

impl Compressor {
    /// A compressor of `build` at libdeflate `level` (0 = stored, 1 = fastest … 12 = smallest).
    pub fn new(build: Build, level: i32) -> Result<Self> {
        if !(0..=12).contains(&level) {
            bail!("libdeflate level {level} is not in 0..=12");
        }
        // SAFETY: plain allocation; NULL only when out of memory.
        let raw = unsafe {
            match build {
                Build::Window4k => deflate4k_alloc_compressor(level),
                Build::SyncEnd => deflate_sync_alloc_compressor(level),
            }
        };
        match NonNull::new(raw) {
            Some(raw) => Ok(Compressor { raw, build, level }),
            None => bail!("out of memory allocating a deflate compressor"),
        }
    }

    pub fn level(&self) -> i32 {
        self.level
    }

    /// The raw deflate stream of `input` if it fits in `max_len` bytes, else `None`.
    pub fn compress(&mut self, input: &[u8], max_len: usize) -> Option<Vec<u8>> {
        let mut out = Vec::<u8>::with_capacity(max_len);
        let f = match self.build {
            Build::Window4k => deflate4k_deflate_compress,
            Build::SyncEnd => deflate_sync_deflate_compress,
        };
        // SAFETY: `input` is readable for its length and `out` writable for `max_len` bytes;
        // libdeflate writes at most that many and returns how many (0: did not fit).
        let n = unsafe {
            f(
                self.raw.as_ptr(),
                input.as_ptr().cast(),
                input.len(),
                out.as_mut_ptr().cast(),
                max_len,
            )
        };
        if n == 0 {
            return None;
        }
        // SAFETY: libdeflate initialised the first `n` (≤ max_len) bytes.
        unsafe { out.set_len(n) };
        Some(out)
    }

    /// The longest stream [`Build::SyncEnd`] can write for `len` input bytes: libdeflate's
    /// bound (`libdeflate_deflate_compress_bound`: all stored blocks of its 5000-byte minimum
    /// block length, 5 bytes each) plus the empty stored block that ends it (at most 5).
    pub fn sync_bound(len: usize) -> usize {
        len + 5 * len.div_ceil(5000).max(1) + 5
    }
}

impl Drop for Compressor {
    fn drop(&mut self) {
        // SAFETY: allocated by the matching alloc function, freed once.
        unsafe {
            match self.build {
                Build::Window4k => deflate4k_free_compressor(self.raw.as_ptr()),
                Build::SyncEnd => deflate_sync_free_compressor(self.raw.as_ptr()),
            }
        }
    }
}
