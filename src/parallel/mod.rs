//! Foundations every stage of the pipeline may use: ordered multi-core processing with bounded
//! memory, the patched libdeflate builds, and the parallel gzip built on them (OS image export,
//! stemcell packing).
pub mod gzip;
pub mod libdeflate;
pub mod pipeline;

/// True when every byte is zero (word-at-a-time, this runs at memory speed). The zero fast
/// paths of the format writers and of the parallel gzip decide by content with it.
pub fn is_zero(buf: &[u8]) -> bool {
    // SAFETY: u128 has no invalid bit patterns; align_to only reinterprets the aligned middle.
    let (pre, words, post) = unsafe { buf.align_to::<u128>() };
    pre.iter().all(|&b| b == 0) && words.iter().all(|&w| w == 0) && post.iter().all(|&b| b == 0)
}
