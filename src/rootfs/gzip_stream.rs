//! Parallel gzip of a stream (pigz-style): 1 MiB chunks deflated independently on all cores,
//! each ended by a sync flush (byte-aligned, non-final), concatenated in order and closed by an
//! empty final block, inside ONE standard gzip member (`tar xzf`, Ruby's GzipReader and Go's
//! gzip all read it). The CRC-32 of each chunk is computed beside it and combined in order.
//! Memory stays bounded by the pipeline window.

use anyhow::{Context, Result};
use flate2::{Compress, Compression, Crc, FlushCompress};
use std::io::{Read, Write};

const CHUNK: usize = 1 << 20;

/// Compresses everything `input` yields into `output`; returns the uncompressed size.
pub fn compress(mut input: impl Read + Send, output: &mut dyn Write, level: u32) -> Result<u64> {
    output.write_all(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3])?;
    let chunks = std::iter::from_fn(move || {
        if let Err(e) = super::interrupt::check() {
            return Some(Err(e));
        }
        let mut buf = vec![0u8; CHUNK];
        let mut filled = 0;
        while filled < CHUNK {
            match input.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {
                    if let Err(e) = super::interrupt::check() {
                        return Some(Err(e));
                    }
                }
                Err(e) => {
                    return Some(Err(
                        anyhow::Error::from(e).context("cannot read the stream to compress")
                    ))
                }
            }
        }
        if filled == 0 {
            return None;
        }
        buf.truncate(filled);
        Some(Ok(buf))
    });
    let mut crc = Crc::new();
    let mut total = 0u64;
    crate::formats::pipeline::ordered_map(
        chunks,
        8,
        |chunk: Vec<u8>| deflate_chunk(&chunk, level),
        |(deflated, chunk_crc): (Vec<u8>, Crc)| {
            crc.combine(&chunk_crc);
            total += chunk_crc.amount() as u64;
            output
                .write_all(&deflated)
                .context("cannot write compressed data")
        },
    )?;
    // The final block: empty, fixed Huffman, BFINAL set.
    output.write_all(&[0x03, 0x00])?;
    output.write_all(&crc.sum().to_le_bytes())?;
    output.write_all(&crc.amount().to_le_bytes())?;
    Ok(total)
}

fn deflate_chunk(chunk: &[u8], level: u32) -> Result<(Vec<u8>, Crc)> {
    let mut crc = Crc::new();
    crc.update(chunk);
    let mut c = Compress::new(Compression::new(level), false);
    let mut out = Vec::with_capacity(chunk.len() / 2 + 1024);
    loop {
        let done = c.total_in() as usize;
        if out.capacity() - out.len() < 16 * 1024 {
            out.reserve(64 * 1024);
        }
        c.compress_vec(&chunk[done..], &mut out, FlushCompress::Sync)
            .context("deflate failed")?;
        if c.total_in() as usize == chunk.len() && out.len() < out.capacity() {
            return Ok((out, crc));
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn round_trips_as_one_gzip_member() {
        let data: Vec<u8> = (0..3 * super::CHUNK + 12345)
            .map(|i| (i % 251) as u8 ^ (i / 7000) as u8)
            .collect();
        let mut out = Vec::new();
        let n = super::compress(&data[..], &mut out, 6).unwrap();
        assert_eq!(n, data.len() as u64);
        let mut back = Vec::new();
        // GzDecoder (not MultiGzDecoder) reads exactly one member: all of it must be there.
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&out[..]), &mut back).unwrap();
        assert!(back == data);
        let mut empty = Vec::new();
        super::compress(&b""[..], &mut empty, 6).unwrap();
        let mut back = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&empty[..]), &mut back)
            .unwrap();
        assert!(back.is_empty());
    }
}
