//! Raw deflate whose matches reach back at most 4 KiB: libdeflate's compressor built with its
//! match window cut from 32 KiB to 4 KiB ([`Build::Window4k`], vendor/libdeflate/deflate4k.c).
//! QEMU inflates compressed qcow2 clusters with windowBits −12, which rejects any longer
//! distance; libdeflate has no runtime option for the window, hence the patched build.

use crate::parallel::libdeflate::{Build, Compressor};
use anyhow::Result;

/// A 4 KiB-window compressor at libdeflate `level` (1 = fastest … 12 = smallest).
pub fn compressor(level: i32) -> Result<Compressor> {
    Compressor::new(Build::Window4k, level)
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{Decompress, FlushDecompress, Status};

    /// Inflates `stream` with a 4 KiB window (raw deflate, windowBits 12, as QEMU): the bytes,
    /// or None when zlib rejects a distance. One output byte per call, so that every match
    /// must come from zlib's 4 KiB window: given a whole cluster of output room, zlib also
    /// copies from the output already written and would accept farther distances.
    fn inflate_with_4k_window(stream: &[u8], len: usize) -> Option<Vec<u8>> {
        let mut d = Decompress::new_with_window_bits(false, 12);
        let mut out = vec![0u8; len + 1];
        loop {
            let (i, o) = (d.total_in() as usize, d.total_out() as usize);
            if o == out.len() {
                return None; // longer than the input was
            }
            match d.decompress(&stream[i..], &mut out[o..o + 1], FlushDecompress::None) {
                Ok(Status::Ok) => {}
                Ok(Status::StreamEnd) => {
                    out.truncate(d.total_out() as usize);
                    return Some(out);
                }
                Ok(Status::BufError) | Err(_) => return None, // truncated or invalid
            }
        }
    }

    fn random(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed;
        let mut v = Vec::with_capacity(len + 8);
        while v.len() < len {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            v.extend_from_slice(&x.to_le_bytes());
        }
        v.truncate(len);
        v
    }

    const CLUSTER: usize = 64 * 1024;

    fn repeat(block: &[u8]) -> Vec<u8> {
        block.iter().copied().cycle().take(CLUSTER).collect()
    }

    /// Clusters whose best matches lie beyond 4 KiB: a compressor with a larger window takes
    /// them, and QEMU would then fail to read the cluster.
    fn beyond_4k_clusters() -> Vec<(&'static str, Vec<u8>)> {
        let mut far = Vec::new(); // a 2 KiB block repeated 5000 bytes later, noise between
        let block = random(2048, 7);
        while far.len() < CLUSTER {
            far.extend_from_slice(&block);
            far.extend_from_slice(&random(5000 - 2048, far.len() as u64 + 1));
        }
        far.truncate(CLUSTER);
        // Real text whose repeats (the files cycled) also lie more than 4 KiB back.
        let text = [include_str!("writer.rs"), include_str!("check.rs")].concat();
        vec![
            ("random 8 KiB block repeated", repeat(&random(8192, 1))),
            ("random 4097-byte block repeated", repeat(&random(4097, 2))),
            ("random 2 KiB block repeated at distance 5000", far),
            ("source text", repeat(text.as_bytes())),
        ]
    }

    /// The above and the edge cases: matches at exactly 4096 bytes, one long run.
    fn adversarial_clusters() -> Vec<(&'static str, Vec<u8>)> {
        let mut all = beyond_4k_clusters();
        all.push(("random 4096-byte block repeated", repeat(&random(4096, 3))));
        all.push(("zeros", vec![0; CLUSTER]));
        all
    }

    #[test]
    fn every_level_stays_within_4_kib() {
        for level in 1..=12 {
            let mut c = compressor(level).unwrap();
            for (what, input) in adversarial_clusters() {
                // Room for a stored stream too, so that every input yields a stream to inflate.
                let stream = c.compress(&input, input.len() + 1024).unwrap();
                let back = inflate_with_4k_window(&stream, input.len());
                assert!(back == Some(input), "level {level}, {what}: no round trip");
            }
        }
    }

    /// The test above would catch a larger window: unmodified libdeflate's streams of these
    /// inputs are rejected.
    #[test]
    fn a_32_kib_window_fails_the_same_inputs() {
        let mut c = libdeflater::Compressor::new(libdeflater::CompressionLvl::new(6).unwrap());
        for (what, input) in beyond_4k_clusters() {
            let mut stream = vec![0; input.len() + 1024];
            let n = c.deflate_compress(&input, &mut stream).unwrap();
            let back = inflate_with_4k_window(&stream[..n], input.len());
            assert!(back.is_none(), "{what}: inflated with a 4 KiB window");
        }
    }

    #[test]
    fn repetition_within_the_window_is_found() {
        let input = random(4000, 9).repeat(16);
        let stream = compressor(6)
            .unwrap()
            .compress(&input, input.len())
            .unwrap();
        assert!(stream.len() < 4000 + 1000, "{} bytes", stream.len());
    }

    #[test]
    fn too_small_an_output_is_none() {
        let noise = random(64 * 1024, 5);
        assert!(compressor(9)
            .unwrap()
            .compress(&noise, noise.len() - 1)
            .is_none());
    }

    #[test]
    fn bad_level_is_an_error() {
        assert!(compressor(0).is_err());
        assert!(compressor(13).is_err());
    }
}
