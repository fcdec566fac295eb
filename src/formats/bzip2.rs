//! Parallel bzip2, the way pbzip2 does it: the input is cut into 900 kB chunks, each chunk
//! becomes an independent bzip2 stream (compressed on all cores), and the streams are
//! concatenated in order. `bunzip2`, Go's `compress/bzip2` and Python's `bz2` read such
//! multi-stream files as one. Used for the CloudStack image (a bzip2-compressed dynamic VHD).

use crate::parallel::pipeline::ordered_map;
use anyhow::{Context, Result};
use bzip2::write::BzEncoder;
use bzip2::Compression;
use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;

/// Input bytes per stream: one bzip2 block at level 9 (pbzip2's default `-b9`).
const CHUNK: usize = 900_000;
/// Chunks in flight: bounds memory to a few tens of MiB.
const WINDOW: usize = 32;

/// Compresses the file `src` to `out` as concatenated bzip2 streams. An empty file gives one
/// empty stream, so the output is always a valid bzip2 file.
pub fn compress_file(src: &Path, out: &mut dyn Write) -> Result<()> {
    let mut file = File::open(src).with_context(|| format!("{}: cannot open", src.display()))?;
    let mut first = true;
    let chunks = std::iter::from_fn(move || {
        let mut buf = Vec::with_capacity(CHUNK);
        match (&mut file).take(CHUNK as u64).read_to_end(&mut buf) {
            Err(e) => Some(Err(anyhow::anyhow!("{}: read error: {e}", src.display()))),
            Ok(0) if !first => None,
            Ok(_) => {
                first = false;
                Some(Ok(buf))
            }
        }
    });
    ordered_map(
        chunks,
        WINDOW,
        |chunk| compress(&chunk),
        |stream| out.write_all(&stream).context("write error"),
    )
}

/// One complete bzip2 stream holding `data`.
fn compress(data: &[u8]) -> Result<Vec<u8>> {
    let mut enc = BzEncoder::new(
        Vec::with_capacity(data.len() / 2 + 1024),
        Compression::best(),
    );
    enc.write_all(data)?;
    Ok(enc.finish()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bzip2::read::MultiBzDecoder;

    #[test]
    fn multi_stream_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("in");
        let data: Vec<u8> = (0..2_500_000u32)
            .map(|i| (i % 251) as u8 ^ (i >> 13) as u8)
            .collect();
        std::fs::write(&src, &data).unwrap();
        let mut out = Vec::new();
        compress_file(&src, &mut out).unwrap();
        let mut back = Vec::new();
        MultiBzDecoder::new(&out[..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, data);
        assert_eq!(
            out.windows(4).filter(|w| w == b"BZh9").count(),
            3,
            "one stream per 900 kB"
        );

        std::fs::write(&src, b"").unwrap();
        let mut out = Vec::new();
        compress_file(&src, &mut out).unwrap();
        assert!(out.starts_with(b"BZh9"));
    }
}
