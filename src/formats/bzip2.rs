//! Parallel bzip2 that writes ONE standard bzip2 stream, bit for bit what `bzip2 -9` writes.
//!
//! A bzip2 stream is a 4-byte header (`BZh9`), then blocks that are bit-aligned, not
//! byte-aligned, then an end-of-stream marker with a CRC combined from every block's CRC. Each
//! block is compressed independently of the others, so blocks can be made on all cores as long
//! as the input is cut exactly where libbzip2 would end a block:
//!
//! 1. [`BlockCutter`] replays libbzip2's first run-length stage (`copy_input_until_stop` and
//!    `ADD_CHAR_TO_BLOCK` in bzlib.c) to find those cuts: a block ends once it holds
//!    `nblockMAX` (899 981) run-length-encoded bytes, and the run still pending at that moment
//!    belongs to the next block.
//! 2. Each chunk is compressed on its own as a one-block stream (the `bzip2` crate), and the
//!    block's bits are taken out of it (between the header and the end-of-stream marker).
//! 3. The blocks are written in order behind one header, shifted to the running bit position,
//!    and closed with one end-of-stream marker and the combined CRC.
//!
//! Readers that stop after the first stream (Java's commons-compress without its
//! concatenated-streams option, some single-stream decoders) therefore read the whole image.
//! Used for the CloudStack image (a bzip2-compressed dynamic VHD).

use crate::parallel::pipeline::ordered_map;
use crate::progress::ByteMeter;
use anyhow::{bail, Context, Result};
use bzip2::write::BzEncoder;
use bzip2::Compression;
use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;

/// libbzip2's block capacity at level 9: `100000 * 9 - 19` run-length-encoded bytes.
const NBLOCK_MAX: usize = 100_000 * 9 - 19;
/// Blocks in flight: bounds memory to a few tens of MiB.
const WINDOW: usize = 32;
/// Input read at a time.
const READ_SIZE: usize = 4 << 20;

const STREAM_HEADER: &[u8; 4] = b"BZh9";
const BLOCK_MAGIC: u64 = 0x3141_5926_5359;
const EOS_MAGIC: u64 = 0x1772_4538_5090;

/// Compresses the file `src` to `out` as one bzip2 stream (level 9).
pub fn compress_file(src: &Path, out: &mut dyn Write) -> Result<()> {
    let file = File::open(src).with_context(|| format!("{}: cannot open", src.display()))?;
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let meter = ByteMeter::new("bzip2 -9 on all cores", len);
    let chunks = BlockCutter::new(meter.reader(file))
        .map(|chunk| chunk.with_context(|| format!("{}: read error", src.display())));
    let mut stream = StreamWriter::new(out)?;
    ordered_map(
        chunks,
        WINDOW,
        |chunk| compress_block(&chunk),
        |block| stream.push(&block),
    )?;
    stream.finish()?;
    meter.finish();
    Ok(())
}

/// Splits a byte stream into the chunks that libbzip2 at level 9 would put in one block each.
struct BlockCutter<R> {
    input: R,
    /// Bytes of the current block so far.
    chunk: Vec<u8>,
    /// Run-length-encoded bytes the current block holds (libbzip2's `nblock`).
    nblock: usize,
    /// The run not yet flushed into the block: its byte (256 = none) and length.
    run_byte: u16,
    run_len: usize,
    /// Input read but not yet fed: `buf[pos..filled]`.
    buf: Vec<u8>,
    pos: usize,
    filled: usize,
    done: bool,
}

impl<R: Read> BlockCutter<R> {
    fn new(input: R) -> Self {
        Self {
            input,
            chunk: Vec::with_capacity(2 * NBLOCK_MAX),
            nblock: 0,
            run_byte: 256,
            run_len: 0,
            buf: vec![0; READ_SIZE],
            pos: 0,
            filled: 0,
            done: false,
        }
    }

    /// Bytes a flushed run adds to the block (`add_pair_to_block`): 1–3 literal bytes, or
    /// four bytes and a count.
    fn run_cost(len: usize) -> usize {
        if len < 4 {
            len
        } else {
            5
        }
    }

    /// Feeds `buf[pos..filled]` until the block is full; returns the finished chunk, if any.
    fn feed(&mut self) -> Option<Vec<u8>> {
        while self.pos < self.filled {
            if self.nblock >= NBLOCK_MAX {
                // The block is full; the run still pending starts the next block.
                let keep = self.chunk.split_off(self.chunk.len() - self.run_len);
                self.nblock = 0;
                return Some(std::mem::replace(&mut self.chunk, keep));
            }
            let b = self.buf[self.pos];
            self.pos += 1;
            let b16 = u16::from(b);
            if b16 != self.run_byte && self.run_len == 1 {
                self.nblock += 1;
                self.run_byte = b16;
            } else if b16 != self.run_byte || self.run_len == 255 {
                if self.run_byte < 256 {
                    self.nblock += Self::run_cost(self.run_len);
                }
                self.run_byte = b16;
                self.run_len = 1;
            } else {
                self.run_len += 1;
            }
            self.chunk.push(b);
        }
        None
    }

    fn next_chunk(&mut self) -> std::io::Result<Option<Vec<u8>>> {
        loop {
            if let Some(full) = self.feed() {
                return Ok(Some(full));
            }
            if self.done {
                return Ok(None);
            }
            let n = match self.input.read(&mut self.buf) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            (self.pos, self.filled) = (0, n);
            if n == 0 {
                // The last block holds whatever is left (nothing for empty input).
                self.done = true;
                let last = std::mem::take(&mut self.chunk);
                return Ok((!last.is_empty()).then_some(last));
            }
        }
    }
}

impl<R: Read> Iterator for BlockCutter<R> {
    type Item = std::io::Result<Vec<u8>>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_chunk().transpose()
    }
}

/// One block, cut out of a one-block stream: its bytes (the first starts the block), its
/// length in bits, and its CRC.
struct Block {
    bytes: Vec<u8>,
    bits: u64,
    crc: u32,
}

/// Compresses one chunk as a one-block stream and takes the block's bits out of it.
fn compress_block(chunk: &[u8]) -> Result<Block> {
    let mut enc = BzEncoder::new(
        Vec::with_capacity(chunk.len() / 2 + 1024),
        Compression::best(),
    );
    enc.write_all(chunk)?;
    let stream = enc.finish()?;
    let bit = |i: u64| (stream[(i / 8) as usize] >> (7 - i % 8)) & 1;
    let read = |from: u64, n: u64| (from..from + n).fold(0u64, |v, i| v << 1 | u64::from(bit(i)));
    let total = stream.len() as u64 * 8;
    if stream.len() < 4 + 10 + 10 || &stream[..4] != STREAM_HEADER || read(32, 48) != BLOCK_MAGIC {
        bail!("bzip2: the encoder did not write a one-block stream");
    }
    let crc = read(80, 32) as u32;
    // The stream ends with the marker, the CRC (one block: the block's own) and 0-7 zero bits.
    let ends: Vec<u64> = (0..8)
        .map(|pad| total - pad - 80)
        .filter(|&end| read(end, 48) == EOS_MAGIC && read(end + 48, 32) as u32 == crc)
        .collect();
    let [end] = ends[..] else {
        bail!(
            "bzip2: cannot find the end of the block ({} candidates)",
            ends.len()
        );
    };
    // A chunk that libbzip2 split in two would carry a first-block CRC of only part of it.
    if crc != block_crc(chunk) {
        bail!("bzip2: a chunk did not fit in one block");
    }
    let bits = end - 32;
    let mut bytes = stream;
    bytes.truncate(end.div_ceil(8) as usize);
    bytes.drain(..4);
    Ok(Block { bytes, bits, crc })
}

/// bzip2's block CRC: CRC-32 with polynomial 0x04c11db7, most significant bit first.
fn block_crc(data: &[u8]) -> u32 {
    static TABLE: std::sync::OnceLock<[u32; 256]> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut t = [0u32; 256];
        for (i, e) in t.iter_mut().enumerate() {
            let mut c = (i as u32) << 24;
            for _ in 0..8 {
                c = if c & 0x8000_0000 != 0 {
                    c << 1 ^ 0x04c1_1db7
                } else {
                    c << 1
                };
            }
            *e = c;
        }
        t
    });
    !data.iter().fold(!0u32, |c, &b| {
        c << 8 ^ table[((c >> 24) as u8 ^ b) as usize]
    })
}

/// Writes blocks behind one header at any bit position, then the end-of-stream marker.
struct StreamWriter<'a> {
    out: &'a mut dyn Write,
    /// Bits not yet written, right-aligned, and how many.
    acc: u64,
    nacc: u32,
    combined_crc: u32,
    staged: Vec<u8>,
}

impl<'a> StreamWriter<'a> {
    fn new(out: &'a mut dyn Write) -> Result<Self> {
        out.write_all(STREAM_HEADER).context("write error")?;
        Ok(Self {
            out,
            acc: 0,
            nacc: 0,
            combined_crc: 0,
            staged: Vec::with_capacity(1 << 20),
        })
    }

    fn put(&mut self, value: u64, n: u32) {
        debug_assert!(n <= 32);
        self.acc = self.acc << n | (value & ((1u64 << n) - 1));
        self.nacc += n;
        while self.nacc >= 8 {
            self.nacc -= 8;
            self.staged.push((self.acc >> self.nacc) as u8);
        }
    }

    fn push(&mut self, block: &Block) -> Result<()> {
        let whole = (block.bits / 8) as usize;
        if self.nacc == 0 {
            self.staged.extend_from_slice(&block.bytes[..whole]);
        } else {
            for &b in &block.bytes[..whole] {
                self.put(u64::from(b), 8);
            }
        }
        let rest = (block.bits % 8) as u32;
        if rest > 0 {
            self.put(u64::from(block.bytes[whole] >> (8 - rest)), rest);
        }
        self.combined_crc = self.combined_crc.rotate_left(1) ^ block.crc;
        self.out.write_all(&self.staged).context("write error")?;
        self.staged.clear();
        Ok(())
    }

    fn finish(mut self) -> Result<()> {
        self.put(EOS_MAGIC >> 24, 24);
        self.put(EOS_MAGIC & 0xff_ffff, 24);
        self.put(u64::from(self.combined_crc), 32);
        if self.nacc > 0 {
            let pad = 8 - self.nacc;
            self.put(0, pad);
        }
        self.out.write_all(&self.staged).context("write error")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bzip2::read::BzDecoder;

    fn compress(data: &[u8]) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("in");
        std::fs::write(&src, data).unwrap();
        let mut out = Vec::new();
        compress_file(&src, &mut out).unwrap();
        out
    }

    #[test]
    fn empty_input_is_the_empty_stream() {
        // What `bzip2 -9 < /dev/null` writes.
        let empty = [
            0x42, 0x5a, 0x68, 0x39, 0x17, 0x72, 0x45, 0x38, 0x50, 0x90, 0, 0, 0, 0,
        ];
        assert_eq!(compress(b""), empty);
    }

    #[test]
    fn many_blocks_decode_as_one_stream() {
        let data: Vec<u8> = (0..2_500_000u32)
            .map(|i| (i % 251) as u8 ^ (i >> 13) as u8)
            .collect();
        let out = compress(&data);
        // A single-stream decoder (not MultiBzDecoder) reads all of it.
        let mut back = Vec::new();
        BzDecoder::new(&out[..]).read_to_end(&mut back).unwrap();
        assert_eq!(back, data);
        assert_eq!(out.windows(4).filter(|w| w == STREAM_HEADER).count(), 1);
    }

    #[test]
    fn block_crc_matches_the_encoders() {
        let data = b"stemcell".repeat(1000);
        let block = compress_block(&data).unwrap();
        assert_eq!(block.crc, block_crc(&data));
    }
}
