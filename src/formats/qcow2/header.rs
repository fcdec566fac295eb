//! The qcow2 header (cluster 0) and the bit layout of table entries: QEMU's `docs/interop/qcow2.rst`.
//! Every integer on disk is big-endian.

use super::super::Qcow2Compat;

/// "QFI\xfb".
pub const MAGIC: [u8; 4] = *b"QFI\xfb";
/// 64 KiB clusters: what QEMU uses by default and what every consumer reads.
pub const CLUSTER_BITS: u32 = 16;
pub const CLUSTER_SIZE: u64 = 1 << CLUSTER_BITS;
/// u64 entries per L2 table (one cluster).
pub const L2_ENTRIES: u64 = CLUSTER_SIZE / 8;
/// Guest bytes one L2 table maps (512 MiB).
pub const L2_SPAN: u64 = CLUSTER_SIZE * L2_ENTRIES;
/// 16-bit refcounts (refcount_order 4): entries per refcount block.
pub const REFCOUNTS_PER_BLOCK: u64 = CLUSTER_SIZE / 2;
/// u64 entries per refcount-table cluster.
pub const RT_ENTRIES_PER_CLUSTER: u64 = CLUSTER_SIZE / 8;

/// L1 / standard L2 entry bit 63: refcount is exactly 1.
pub const COPIED: u64 = 1 << 63;
/// L2 entry bit 62: compressed cluster descriptor.
pub const COMPRESSED: u64 = 1 << 62;
/// Standard L2 bit 0 (v3): reads as zeros.
pub const ZERO_FLAG: u64 = 1;
/// Host offset bits 9–55 of L1 and standard L2 entries.
pub const OFFSET_MASK: u64 = 0x00ff_ffff_ffff_fe00;
/// Compressed descriptor: the byte offset takes bits 0..x with x = 62 − (cluster_bits − 8).
pub const COMPRESSED_OFFSET_BITS: u32 = 62 - (CLUSTER_BITS - 8);
pub const COMPRESSED_OFFSET_MASK: u64 = (1 << COMPRESSED_OFFSET_BITS) - 1;
/// Compressed descriptor: additional 512-byte sectors, bits x..61.
pub const COMPRESSED_SECTORS_MASK: u64 = (1 << (62 - COMPRESSED_OFFSET_BITS)) - 1;

/// Header length QEMU writes for v3 (104 bytes of fields, compression type byte, padding).
pub const V3_HEADER_LENGTH: u32 = 112;
pub const V2_HEADER_LENGTH: u32 = 72;

/// The header fields this project writes and reads. Fields a plain image keeps at zero
/// (backing file, encryption, snapshots) are still parsed so the checker can reject them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub version: u32,
    pub backing_file_offset: u64,
    pub backing_file_size: u32,
    pub cluster_bits: u32,
    pub size: u64,
    pub crypt_method: u32,
    pub l1_size: u32,
    pub l1_table_offset: u64,
    pub refcount_table_offset: u64,
    pub refcount_table_clusters: u32,
    pub nb_snapshots: u32,
    pub snapshots_offset: u64,
    pub incompatible_features: u64,
    pub compatible_features: u64,
    pub autoclear_features: u64,
    pub refcount_order: u32,
    pub header_length: u32,
    /// Byte 104 of a v3 header of length ≥ 112: 0 = deflate.
    pub compression_type: u8,
}

/// L1 entries needed to map `size` guest bytes.
pub fn l1_entries(size: u64) -> u64 {
    size.div_ceil(L2_SPAN)
}

/// The compressed L2 descriptor for `len` bytes at host byte `offset`.
pub fn compressed_entry(offset: u64, len: u64) -> u64 {
    COMPRESSED | (compressed_extra_sectors(offset, len) << COMPRESSED_OFFSET_BITS) | offset
}

/// QEMU's count of additional sectors a compressed stream touches.
pub fn compressed_extra_sectors(offset: u64, len: u64) -> u64 {
    ((offset + len - 1) >> 9) - (offset >> 9)
}

/// Host byte range a compressed descriptor designates: from its offset to the end of its last
/// sector. Every host cluster this range touches holds one reference for it (docs/formats.md "qcow2 one-pass layout").
pub fn compressed_range(entry: u64) -> std::ops::Range<u64> {
    let offset = entry & COMPRESSED_OFFSET_MASK;
    let sectors = (entry >> COMPRESSED_OFFSET_BITS) & COMPRESSED_SECTORS_MASK;
    offset..((offset >> 9) + sectors + 1) * 512
}

impl Header {
    /// A fresh header for a plain image (no backing file, no snapshots, deflate, 16-bit refcounts).
    pub fn new(compat: Qcow2Compat, size: u64) -> Self {
        let v3 = compat == Qcow2Compat::V3;
        Header {
            version: if v3 { 3 } else { 2 },
            backing_file_offset: 0,
            backing_file_size: 0,
            cluster_bits: CLUSTER_BITS,
            size,
            crypt_method: 0,
            l1_size: l1_entries(size) as u32,
            l1_table_offset: 0,
            refcount_table_offset: 0,
            refcount_table_clusters: 0,
            nb_snapshots: 0,
            snapshots_offset: 0,
            incompatible_features: 0,
            compatible_features: 0,
            autoclear_features: 0,
            refcount_order: 4,
            header_length: if v3 {
                V3_HEADER_LENGTH
            } else {
                V2_HEADER_LENGTH
            },
            compression_type: 0,
        }
    }

    /// Encodes the header followed by the end-of-extensions marker (8 zero bytes).
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(self.header_length as usize + 8);
        b.extend_from_slice(&MAGIC);
        b.extend_from_slice(&self.version.to_be_bytes());
        b.extend_from_slice(&self.backing_file_offset.to_be_bytes());
        b.extend_from_slice(&self.backing_file_size.to_be_bytes());
        b.extend_from_slice(&self.cluster_bits.to_be_bytes());
        b.extend_from_slice(&self.size.to_be_bytes());
        b.extend_from_slice(&self.crypt_method.to_be_bytes());
        b.extend_from_slice(&self.l1_size.to_be_bytes());
        b.extend_from_slice(&self.l1_table_offset.to_be_bytes());
        b.extend_from_slice(&self.refcount_table_offset.to_be_bytes());
        b.extend_from_slice(&self.refcount_table_clusters.to_be_bytes());
        b.extend_from_slice(&self.nb_snapshots.to_be_bytes());
        b.extend_from_slice(&self.snapshots_offset.to_be_bytes());
        if self.version >= 3 {
            b.extend_from_slice(&self.incompatible_features.to_be_bytes());
            b.extend_from_slice(&self.compatible_features.to_be_bytes());
            b.extend_from_slice(&self.autoclear_features.to_be_bytes());
            b.extend_from_slice(&self.refcount_order.to_be_bytes());
            b.extend_from_slice(&self.header_length.to_be_bytes());
            if self.header_length > 104 {
                b.push(self.compression_type);
            }
            b.resize(self.header_length as usize, 0);
        }
        b.extend_from_slice(&[0u8; 8]); // end of header extensions
        b
    }

    /// Decodes the fixed header fields; the error says which field is unreadable.
    pub fn decode(b: &[u8]) -> Result<Self, String> {
        if b.len() < 72 {
            return Err(format!("header is {} bytes, shorter than 72", b.len()));
        }
        if b[..4] != MAGIC {
            return Err("bad magic (not a qcow2 image)".into());
        }
        let u32_at = |o: usize| u32::from_be_bytes(b[o..o + 4].try_into().unwrap());
        let u64_at = |o: usize| u64::from_be_bytes(b[o..o + 8].try_into().unwrap());
        let version = u32_at(4);
        let mut h = Header {
            version,
            backing_file_offset: u64_at(8),
            backing_file_size: u32_at(16),
            cluster_bits: u32_at(20),
            size: u64_at(24),
            crypt_method: u32_at(32),
            l1_size: u32_at(36),
            l1_table_offset: u64_at(40),
            refcount_table_offset: u64_at(48),
            refcount_table_clusters: u32_at(56),
            nb_snapshots: u32_at(60),
            snapshots_offset: u64_at(64),
            incompatible_features: 0,
            compatible_features: 0,
            autoclear_features: 0,
            refcount_order: 4,
            header_length: V2_HEADER_LENGTH,
            compression_type: 0,
        };
        if version >= 3 {
            if b.len() < 104 {
                return Err(format!("v3 header is {} bytes, shorter than 104", b.len()));
            }
            h.incompatible_features = u64_at(72);
            h.compatible_features = u64_at(80);
            h.autoclear_features = u64_at(88);
            h.refcount_order = u32_at(96);
            h.header_length = u32_at(100);
            if h.header_length > 104 && b.len() > 104 {
                h.compression_type = b[104];
            }
        }
        Ok(h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_in_both_versions() {
        for compat in [Qcow2Compat::V2, Qcow2Compat::V3] {
            let mut h = Header::new(compat, 10 << 30);
            h.l1_table_offset = 3 << 16;
            h.refcount_table_offset = 4 << 16;
            h.refcount_table_clusters = 1;
            let bytes = h.encode();
            assert_eq!(bytes.len(), h.header_length as usize + 8);
            assert_eq!(Header::decode(&bytes).unwrap(), h);
            assert_eq!(h.l1_size, 20);
        }
    }

    #[test]
    fn compressed_descriptor_matches_qemu_formula() {
        // 100 bytes starting 10 bytes before a sector boundary touch two sectors.
        let e = compressed_entry(1024 - 10, 100);
        assert_eq!(e & COMPRESSED_OFFSET_MASK, 1014);
        assert_eq!((e >> 54) & 0xff, 1);
        assert_eq!(compressed_range(e), 1014..1536);
    }
}
