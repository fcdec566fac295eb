//! libdeflate's compressor, patched and built twice from vendor/libdeflate (see its README.md):
//! - [`Build::Window4k`]: matches reach back at most 4 KiB, for qcow2 clusters (QEMU inflates
//!   them with windowBits −12; libdeflate has no runtime option for the window);
//! - [`Build::SyncEnd`]: the normal 32 KiB window, but no block is final and the stream ends
//!   byte-aligned with an empty stored block (zlib's Z_SYNC_FLUSH), so that pieces compressed
//!   on different cores concatenate into one DEFLATE stream (the parallel gzip writer).
//!
//! libdeflate compresses about 1.4 times as fast as zlib at the same level, and smaller.

use anyhow::{bail, Result};
use std::cell::RefCell;
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
    /// 4 KiB match window, streams ending with a final block; levels 1 to 12.
    Window4k,
    /// 32 KiB match window, streams ending non-final and byte-aligned; levels 0 to 12.
    SyncEnd,
}

/// The renamed entry points of one build, and the levels it accepts.
struct Api {
    alloc: unsafe extern "C" fn(i32) -> *mut RawCompressor,
    compress:
        unsafe extern "C" fn(*mut RawCompressor, *const c_void, usize, *mut c_void, usize) -> usize,
    free: unsafe extern "C" fn(*mut RawCompressor),
    levels: std::ops::RangeInclusive<i32>,
}

impl Build {
    fn api(self) -> Api {
        match self {
            Build::Window4k => Api {
                alloc: deflate4k_alloc_compressor,
                compress: deflate4k_deflate_compress,
                free: deflate4k_free_compressor,
                levels: 1..=12,
            },
            Build::SyncEnd => Api {
                alloc: deflate_sync_alloc_compressor,
                compress: deflate_sync_deflate_compress,
                free: deflate_sync_free_compressor,
                levels: 0..=12,
            },
        }
    }
}

/// One compressor (at most 0.6 MB at levels 1 to 9, 8.9 MB at 10 to 12, mostly matchfinder
/// tables); not shareable between threads, so keep one per thread ([`with_thread_compressor`]).
pub struct Compressor {
    raw: NonNull<RawCompressor>,
    api: Api,
    level: i32,
}

impl Compressor {
    /// A compressor of `build` at libdeflate `level` (0 = stored, 1 = fastest … 12 = smallest).
    pub fn new(build: Build, level: i32) -> Result<Self> {
        let api = build.api();
        if !api.levels.contains(&level) {
            bail!(
                "libdeflate level {level} is not in {}..={}",
                api.levels.start(),
                api.levels.end()
            );
        }
        // SAFETY: plain allocation; NULL only when out of memory.
        match NonNull::new(unsafe { (api.alloc)(level) }) {
            Some(raw) => Ok(Compressor { raw, api, level }),
            None => bail!("out of memory allocating a deflate compressor"),
        }
    }

    /// The raw deflate stream of `input` if it fits in `max_len` bytes, else `None`.
    pub fn compress(&mut self, input: &[u8], max_len: usize) -> Option<Vec<u8>> {
        let mut out = Vec::<u8>::with_capacity(max_len);
        // SAFETY: `input` is readable for its length and `out` writable for `max_len` bytes;
        // libdeflate writes at most that many and returns how many (0: did not fit).
        let n = unsafe {
            (self.api.compress)(
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
        // SAFETY: allocated by the same build's alloc function, freed once.
        unsafe { (self.api.free)(self.raw.as_ptr()) }
    }
}

thread_local! {
    /// This thread's compressor of each build, at the level it was made for.
    static PER_THREAD: RefCell<[Option<Compressor>; 2]> = const { RefCell::new([None, None]) };
}

/// Runs `f` with this thread's compressor of `build` at `level`, made on first use (and again
/// when the level changes): the compressing threads of the pipeline each keep one.
pub fn with_thread_compressor<T>(
    build: Build,
    level: i32,
    f: impl FnOnce(&mut Compressor) -> T,
) -> Result<T> {
    PER_THREAD.with(|cells| {
        let mut cells = cells.borrow_mut();
        let cell = &mut cells[build as usize];
        if cell.as_ref().is_none_or(|c| c.level != level) {
            *cell = Some(Compressor::new(build, level)?);
        }
        Ok(f(cell.as_mut().expect("compressor just made")))
    })
}
