//! Parallel gzip (pigz-style: one standard gzip member, deflate blocks compressed on all cores).
//!
//! The input is cut into blocks of [`GzOptions::block_size`] bytes. Each block is raw-deflated
//! on its own by libdeflate's [`Build::SyncEnd`] build, whose streams end non-final and
//! byte-aligned (an empty stored block, as zlib's sync flush), so that the blocks concatenate
//! into one valid deflate stream; after the last block comes an empty final block. libdeflate
//! has no preset dictionary, so a block cannot refer to the one before: at 1 MiB blocks that
//! costs under 0.1 % of size, and libdeflate is faster and smaller than zlib at the same level.
//! The CRC-32 of each block is computed with it and the CRCs are combined in order. Header and
//! trailer are written here.
//!
//! Invariants: at most `window` blocks are in flight (bounded memory); the output depends on the
//! input bytes and options only; it is one gzip member that `gzip -d`, Go's `compress/gzip` and
//! `tar xzf` read back to the exact input.

use super::libdeflate::{with_thread_compressor, Build, Compressor};
use super::pipeline::ordered_map;
use anyhow::{anyhow, Context, Result};
use flate2::Crc;
use std::io::{self, Write};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// An empty final block (BFINAL 1, fixed Huffman, end-of-block): ends the deflate stream after
/// the last block's byte-aligned end, as zlib's Z_FINISH after a sync flush.
const EMPTY_FINAL_BLOCK: [u8; 2] = [0x03, 0x00];

/// Tuning of the parallel compressor.
#[derive(Clone, Copy, Debug)]
pub struct GzOptions {
    /// zlib level 0 (stored) to 9.
    pub level: u32,
    /// Input bytes per block (128 KiB to 1 MiB is the sweet spot).
    pub block_size: usize,
}

impl Default for GzOptions {
    fn default() -> Self {
        Self {
            level: 6,
            block_size: 256 * 1024,
        }
    }
}

/// A `Write` that can also be told "n zero bytes follow" without materialising them; the
/// parallel gzip writer compresses a whole zero block once and reuses it.
pub trait ZeroWrite: Write {
    fn write_zeros(&mut self, mut n: u64) -> io::Result<()> {
        let zeros = [0u8; 64 * 1024];
        while n > 0 {
            let k = n.min(zeros.len() as u64) as usize;
            self.write_all(&zeros[..k])?;
            n -= k as u64;
        }
        Ok(())
    }
}

impl ZeroWrite for std::fs::File {}
impl ZeroWrite for Vec<u8> {}

enum Payload {
    Data(Vec<u8>),
    /// A full block of zeros.
    Zeros(usize),
}

struct Block {
    payload: Payload,
    level: u32,
    last: bool,
}

struct Compressed {
    bytes: Arc<Vec<u8>>,
    crc: Arc<Crc>,
}

/// The compressed form of one zero block, shared by every zero block of the same size/level.
type ZeroCache = Mutex<Option<(usize, u32, Arc<Vec<u8>>, Arc<Crc>)>>;

/// A parallel gzip encoder around `W`. Call [`ParallelGzWriter::finish`] to write the trailer
/// and get `W` back; dropping it without `finish` abandons the stream (the output is invalid).
pub struct ParallelGzWriter<W: Write + Send + 'static> {
    opts: GzOptions,
    buf: Vec<u8>,
    tx: Option<SyncSender<Block>>,
    thread: Option<JoinHandle<Result<W>>>,
}

impl<W: Write + Send + 'static> ParallelGzWriter<W> {
    /// Starts a gzip member on `inner` (the header is written by the background thread).
    pub fn new(inner: W, opts: GzOptions) -> Self {
        let threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        let window = threads * 4;
        let (tx, rx) = sync_channel::<Block>(window);
        let level = opts.level;
        let thread = std::thread::spawn(move || -> Result<W> {
            let mut out = inner;
            out.write_all(&header(level))
                .context("cannot write gzip header")?;
            let mut crc = Crc::new();
            let zero_cache: ZeroCache = Mutex::new(None);
            ordered_map(
                rx.into_iter().map(Ok),
                window,
                |b: Block| compress_block(b, &zero_cache),
                |c: Compressed| {
                    out.write_all(&c.bytes)?;
                    crc.combine(&c.crc);
                    Ok(())
                },
            )?;
            let mut trailer = [0u8; 8];
            trailer[..4].copy_from_slice(&crc.sum().to_le_bytes());
            trailer[4..].copy_from_slice(&crc.amount().to_le_bytes());
            out.write_all(&trailer)
                .context("cannot write gzip trailer")?;
            out.flush()?;
            Ok(out)
        });
        Self {
            buf: Vec::with_capacity(opts.block_size),
            opts,
            tx: Some(tx),
            thread: Some(thread),
        }
    }

    /// Changes the level for the data written from now on (blocks are independent, so a
    /// stream may mix levels: level 0 copies already-compressed members at memory speed).
    pub fn set_level(&mut self, level: u32) -> io::Result<()> {
        if !self.buf.is_empty() {
            self.flush_block(false)?;
        }
        self.opts.level = level.min(9);
        Ok(())
    }

    /// Compresses what is buffered as the last block, writes the trailer and returns `W`.
    pub fn finish(mut self) -> Result<W> {
        self.flush_block(true).map_err(|e| self.failure(e))?;
        self.tx = None;
        self.join()
    }

    fn join(&mut self) -> Result<W> {
        let t = self.thread.take().expect("gzip thread joined once");
        t.join()
            .map_err(|_| anyhow!("gzip compressor thread panicked"))?
    }

    /// After a send failed: the background thread stopped, and its error is the real cause.
    fn failure(&mut self, e: io::Error) -> anyhow::Error {
        self.tx = None;
        match self.thread.take().map(|t| t.join()) {
            Some(Ok(Err(err))) => err,
            _ => e.into(),
        }
    }

    fn send(&mut self, payload: Payload, last: bool) -> io::Result<()> {
        let block = Block {
            payload,
            level: self.opts.level,
            last,
        };
        let tx = self
            .tx
            .as_ref()
            .ok_or_else(|| io::Error::other("gzip stream already finished"))?;
        tx.send(block)
            .map_err(|_| io::Error::other("gzip compressor stopped"))
    }

    fn flush_block(&mut self, last: bool) -> io::Result<()> {
        let data = std::mem::replace(&mut self.buf, Vec::with_capacity(self.opts.block_size));
        // A whole block of zeros is compressed the same way whether it came from a hole
        // (`write_zeros`) or from zero bytes: the output depends on the content only, so two
        // sources with equal bytes but different sparseness give identical gzip streams.
        if !last && data.len() == self.opts.block_size && super::is_zero(&data) {
            return self.send(Payload::Zeros(data.len()), false);
        }
        self.send(Payload::Data(data), last)
    }

    fn io_failure(&mut self, e: io::Error) -> io::Error {
        let err = self.failure(e);
        io::Error::other(format!("{err:#}"))
    }
}

impl<W: Write + Send + 'static> Write for ParallelGzWriter<W> {
    fn write(&mut self, mut data: &[u8]) -> io::Result<usize> {
        let n = data.len();
        while !data.is_empty() {
            let room = self.opts.block_size - self.buf.len();
            let k = room.min(data.len());
            self.buf.extend_from_slice(&data[..k]);
            data = &data[k..];
            if self.buf.len() == self.opts.block_size {
                self.flush_block(false).map_err(|e| self.io_failure(e))?;
            }
        }
        Ok(n)
    }

    /// Blocks are only emitted when full; `flush` does not force a short block.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<W: Write + Send + 'static> ZeroWrite for ParallelGzWriter<W> {
    fn write_zeros(&mut self, mut n: u64) -> io::Result<()> {
        // Fill the current block, then send whole zero blocks without touching memory.
        let room = (self.opts.block_size - self.buf.len()) as u64;
        if !self.buf.is_empty() || n < self.opts.block_size as u64 {
            let k = room.min(n) as usize;
            self.buf.resize(self.buf.len() + k, 0);
            n -= k as u64;
            if self.buf.len() == self.opts.block_size {
                self.flush_block(false).map_err(|e| self.io_failure(e))?;
            }
        }
        while n >= self.opts.block_size as u64 {
            self.send(Payload::Zeros(self.opts.block_size), false)
                .map_err(|e| self.io_failure(e))?;
            n -= self.opts.block_size as u64;
        }
        self.buf.resize(self.buf.len() + n as usize, 0);
        Ok(())
    }
}

impl<W: Write + Send + 'static> Drop for ParallelGzWriter<W> {
    fn drop(&mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The 10-byte gzip header: no name, mtime 0 (reproducible), OS = Unix.
fn header(level: u32) -> [u8; 10] {
    let xfl = match level {
        9 => 2,
        1 => 4,
        _ => 0,
    };
    [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, xfl, 3]
}

fn compress_block(b: Block, zero_cache: &ZeroCache) -> Result<Compressed> {
    match b.payload {
        Payload::Data(data) => {
            let bytes = deflate(&data, b.level, b.last)?;
            let mut crc = Crc::new();
            crc.update(&data);
            Ok(Compressed {
                bytes: Arc::new(bytes),
                crc: Arc::new(crc),
            })
        }
        Payload::Zeros(n) => {
            if b.last {
                // Never sent as last, but stay correct if it were.
                return compress_block(
                    Block {
                        payload: Payload::Data(vec![0; n]),
                        ..b
                    },
                    zero_cache,
                );
            }
            let mut cache = zero_cache.lock().expect("zero cache poisoned");
            if let Some((size, level, bytes, crc)) = cache.as_ref() {
                if *size == n && *level == b.level {
                    return Ok(Compressed {
                        bytes: bytes.clone(),
                        crc: crc.clone(),
                    });
                }
            }
            // Blocks never refer to each other, so a zero block compresses the same anywhere.
            let zeros = vec![0u8; n];
            let bytes = Arc::new(deflate(&zeros, b.level, false)?);
            let mut crc = Crc::new();
            crc.update(&zeros);
            let crc = Arc::new(crc);
            *cache = Some((n, b.level, bytes.clone(), crc.clone()));
            Ok(Compressed { bytes, crc })
        }
    }
}

/// Raw deflate of one block, ending byte-aligned; the last block also ends the stream.
fn deflate(data: &[u8], level: u32, last: bool) -> Result<Vec<u8>> {
    let stream = with_thread_compressor(Build::SyncEnd, level.min(9) as i32, |c| {
        c.compress(data, Compressor::sync_bound(data.len()))
    })?;
    let mut out =
        stream.ok_or_else(|| anyhow!("deflate: {} bytes did not fit their bound", data.len()))?;
    if last {
        out.extend_from_slice(&EMPTY_FINAL_BLOCK);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// The stream depends on the bytes only, not on whether zeros arrived as a hole
    /// (`write_zeros`) or as data: reproducible stemcells need it.
    #[test]
    fn zeros_compress_the_same_from_holes_and_from_data() {
        let opts = GzOptions {
            level: 6,
            block_size: 64 * 1024,
        };
        let text: Vec<u8> = (0..200_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        let write = |holes: bool| {
            let mut w = ParallelGzWriter::new(Vec::new(), opts);
            w.write_all(&text[..100_000]).unwrap();
            if holes {
                w.write_zeros(1_000_000).unwrap();
            } else {
                w.write_all(&vec![0u8; 1_000_000]).unwrap();
            }
            w.write_all(&text[100_000..]).unwrap();
            w.finish().unwrap()
        };
        let (a, b) = (write(true), write(false));
        let a2 = write(true);
        let first = |x: &[u8], y: &[u8]| x.iter().zip(y).position(|(p, q)| p != q);
        assert!(
            a == a2,
            "same input twice differs at {:?} (len {} vs {})",
            first(&a, &a2),
            a.len(),
            a2.len()
        );
        assert!(
            a == b,
            "holes vs data differ at {:?} (len {} vs {})",
            first(&a, &b),
            a.len(),
            b.len()
        );
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&a[..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back.len(), text.len() + 1_000_000);
    }

    fn gz(data: &[u8], opts: GzOptions) -> Vec<u8> {
        let mut w = ParallelGzWriter::new(Vec::new(), opts);
        w.write_all(data).unwrap();
        w.finish().unwrap()
    }

    fn gunzip(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(data)
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    fn sample(n: usize) -> Vec<u8> {
        // Compressible but not trivial: text-like with a slowly changing pattern.
        (0..n)
            .map(|i| b"stemcell packing "[(i / 3 + i / 1000) % 17] ^ ((i / 7919) as u8 & 3))
            .collect()
    }

    #[test]
    fn round_trips_small_empty_and_multi_block() {
        let small = GzOptions {
            level: 6,
            block_size: 4096,
        };
        for n in [0usize, 1, 4095, 4096, 4097, 100_000] {
            let data = sample(n);
            assert_eq!(gunzip(&gz(&data, small)), data, "size {n}");
        }
    }

    #[test]
    fn zeros_and_level_changes_round_trip() {
        let opts = GzOptions {
            level: 6,
            block_size: 8192,
        };
        let mut w = ParallelGzWriter::new(Vec::new(), opts);
        let mut expect = Vec::new();
        w.write_all(&sample(5000)).unwrap();
        expect.extend(sample(5000));
        w.write_zeros(100_000).unwrap();
        expect.resize(expect.len() + 100_000, 0);
        w.set_level(0).unwrap();
        w.write_all(&sample(20_000)).unwrap();
        expect.extend(sample(20_000));
        w.set_level(9).unwrap();
        w.write_zeros(10).unwrap();
        expect.resize(expect.len() + 10, 0);
        let out = w.finish().unwrap();
        assert_eq!(gunzip(&out), expect);
        // 100 KB of zeros compresses to almost nothing.
        assert!(out.len() < 5000 + 20_100 + 2000, "{}", out.len());
    }

    /// Every level, and block ends at every bit position: 300 blocks of text, noise and zeros,
    /// cut at pseudo-random lengths (`set_level` ends a block wherever it is), read back by
    /// flate2's single-member decoder and by `gzip -t`. A block marked final, or a block end
    /// not byte-aligned, would stop or garble the decoder.
    #[test]
    fn pieces_of_every_level_and_length_concatenate_into_one_member() {
        let mut x = 0x9e3779b97f4a7c15u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut w = ParallelGzWriter::new(
            Vec::new(),
            GzOptions {
                level: 6,
                block_size: 16 * 1024,
            },
        );
        let mut expect = Vec::new();
        for i in 0..300u64 {
            let len = (next() % 40_000) as usize;
            let piece: Vec<u8> = match i % 3 {
                0 => sample(len + i as usize)[i as usize..].to_vec(),
                1 => (0..len).map(|_| next() as u8).collect(),
                _ => vec![0; len],
            };
            w.write_all(&piece).unwrap();
            expect.extend_from_slice(&piece);
            w.set_level((next() % 10) as u32).unwrap();
        }
        let out = w.finish().unwrap();
        assert_eq!(gunzip(&out), expect);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pieces.gz");
        std::fs::write(&path, &out).unwrap();
        let test = std::process::Command::new("gzip")
            .arg("-t")
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            test.status.success(),
            "gzip -t: {}",
            String::from_utf8_lossy(&test.stderr)
        );
    }

    /// Blocks do not refer to each other, yet 1 MiB blocks of real text compress within 1 % of
    /// one libdeflate stream of the whole input.
    #[test]
    fn independent_blocks_cost_little() {
        // Words of this file in pseudo-random order: text-like, without repeats at long range.
        let src = include_str!("gzip.rs");
        let words: Vec<&str> = src.split_whitespace().collect();
        let mut x = 88172645463325252u64;
        let mut text = Vec::new();
        while text.len() < 4 << 20 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            text.extend_from_slice(words[(x % words.len() as u64) as usize].as_bytes());
            text.push(if x % 11 == 0 { b'\n' } else { b' ' });
        }
        let ours = gz(
            &text,
            GzOptions {
                level: 6,
                block_size: 1 << 20,
            },
        );
        let mut whole = libdeflater::Compressor::new(libdeflater::CompressionLvl::new(6).unwrap());
        let mut buf = vec![0; whole.gzip_compress_bound(text.len())];
        let n = whole.gzip_compress(&text, &mut buf).unwrap();
        assert!(
            (ours.len() as f64) < n as f64 * 1.01 + 64.0,
            "{} bytes against {n} in one stream",
            ours.len()
        );
        assert_eq!(gunzip(&ours), text);
    }

    #[test]
    fn error_from_inner_writer_is_reported() {
        struct Full;
        impl Write for Full {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::Error::other("disk full"))
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut w = ParallelGzWriter::new(
            Full,
            GzOptions {
                level: 1,
                block_size: 4096,
            },
        );
        let r = w.write_all(&sample(1 << 20));
        let msg = match r {
            Err(e) => e.to_string(),
            Ok(()) => format!("{:#}", w.finish().err().unwrap()),
        };
        assert!(msg.contains("disk full"), "{msg}");
    }
}
