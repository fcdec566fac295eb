//! streamOptimized byte layouts (VMware's "Virtual Disk Format 5.0" technote). All integers are little-endian.

/// 64 KiB grains (128 sectors), as every streamOptimized producer uses.
pub const GRAIN_SECTORS: u64 = 128;
pub const GRAIN_BYTES: u64 = GRAIN_SECTORS * 512;
/// Grain table entries per GT: each GT covers 32 MiB.
pub const GT_ENTRIES: u64 = 512;
/// Sectors reserved for the embedded descriptor (qemu and open-vmdk use 20).
pub const DESCRIPTOR_SECTORS: u64 = 20;
/// First sector of the grain stream (VMDKstream, qemu and the COT fixtures use 128).
pub const OVERHEAD_SECTORS: u64 = 128;
/// gdOffset of the leading header of a pure stream: the GD is found through the footer.
pub const GD_AT_END: u64 = u64::MAX;
pub const MAGIC: &[u8; 4] = b"KDMV";
/// ESXi rejects versions below 3 ("sparse VMDK version too old").
pub const VERSION: u32 = 3;
/// Newline detection valid (bit 0) + compressed grains (bit 16) + markers (bit 17).
pub const FLAGS: u32 = 0x0003_0001;
pub const FLAG_COMPRESSED: u32 = 1 << 16;
pub const FLAG_MARKERS: u32 = 1 << 17;
pub const COMPRESS_DEFLATE: u16 = 1;

/// Metadata marker types (the `type` of a marker whose `size` is 0).
pub const MARKER_EOS: u32 = 0;
pub const MARKER_GT: u32 = 1;
pub const MARKER_GD: u32 = 2;
pub const MARKER_FOOTER: u32 = 3;

/// The SparseExtentHeader; the same struct is the footer (with the real `gd_offset`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub version: u32,
    pub flags: u32,
    /// Virtual size in sectors.
    pub capacity: u64,
    pub grain_sectors: u64,
    pub descriptor_offset: u64,
    pub descriptor_sectors: u64,
    pub gtes_per_gt: u32,
    pub gd_offset: u64,
    pub overhead: u64,
    pub newline_chars: [u8; 4],
    pub compress_algorithm: u16,
    /// True when the 433 pad bytes (and the unclean-shutdown flag) are all zero.
    pub pad_is_zero: bool,
}

impl Header {
    /// The header this writer emits for a disk of `capacity` sectors.
    pub fn stream(capacity: u64, gd_offset: u64) -> Self {
        Header {
            version: VERSION,
            flags: FLAGS,
            capacity,
            grain_sectors: GRAIN_SECTORS,
            descriptor_offset: 1,
            descriptor_sectors: DESCRIPTOR_SECTORS,
            gtes_per_gt: GT_ENTRIES as u32,
            gd_offset,
            overhead: OVERHEAD_SECTORS,
            newline_chars: [b'\n', b' ', b'\r', b'\n'],
            compress_algorithm: COMPRESS_DEFLATE,
            pad_is_zero: true,
        }
    }

    pub fn encode(&self) -> [u8; 512] {
        let mut b = [0u8; 512];
        b[0..4].copy_from_slice(MAGIC);
        b[4..8].copy_from_slice(&self.version.to_le_bytes());
        b[8..12].copy_from_slice(&self.flags.to_le_bytes());
        b[12..20].copy_from_slice(&self.capacity.to_le_bytes());
        b[20..28].copy_from_slice(&self.grain_sectors.to_le_bytes());
        b[28..36].copy_from_slice(&self.descriptor_offset.to_le_bytes());
        b[36..44].copy_from_slice(&self.descriptor_sectors.to_le_bytes());
        b[44..48].copy_from_slice(&self.gtes_per_gt.to_le_bytes());
        // 48..56 rgdOffset stays 0: flag bit 1 (redundant GD) is clear.
        b[56..64].copy_from_slice(&self.gd_offset.to_le_bytes());
        b[64..72].copy_from_slice(&self.overhead.to_le_bytes());
        b[73..77].copy_from_slice(&self.newline_chars);
        b[77..79].copy_from_slice(&self.compress_algorithm.to_le_bytes());
        b
    }

    /// Parses a header; `None` when the magic is wrong.
    pub fn parse(b: &[u8; 512]) -> Option<Self> {
        if &b[0..4] != MAGIC {
            return None;
        }
        Some(Header {
            version: le32(b, 4),
            flags: le32(b, 8),
            capacity: le64(b, 12),
            grain_sectors: le64(b, 20),
            descriptor_offset: le64(b, 28),
            descriptor_sectors: le64(b, 36),
            gtes_per_gt: le32(b, 44),
            gd_offset: le64(b, 56),
            overhead: le64(b, 64),
            newline_chars: b[73..77].try_into().unwrap(),
            compress_algorithm: u16::from_le_bytes(b[77..79].try_into().unwrap()),
            pad_is_zero: b[72] == 0 && b[79..].iter().all(|&x| x == 0),
        })
    }
}

/// A metadata marker sector: `num_sectors` of metadata follow it.
pub fn metadata_marker(num_sectors: u64, kind: u32) -> [u8; 512] {
    let mut b = [0u8; 512];
    b[0..8].copy_from_slice(&num_sectors.to_le_bytes());
    b[12..16].copy_from_slice(&kind.to_le_bytes());
    b
}

/// The embedded descriptor: `extent_name` is the file name the .vmdk has next to its .ovf
/// (libvmdk opens the extent by this name; qemu and vSphere ignore it).
pub fn descriptor(cid: u32, capacity: u64, extent_name: &str) -> String {
    let cylinders = capacity.div_ceil(255 * 63).min(65535);
    format!(
        "# Disk DescriptorFile\n\
         version=1\n\
         CID={cid:08x}\n\
         parentCID=ffffffff\n\
         createType=\"streamOptimized\"\n\
         \n\
         # Extent description\n\
         RW {capacity} SPARSE \"{extent_name}\"\n\
         \n\
         # The Disk Data Base\n\
         #DDB\n\
         \n\
         ddb.adapterType = \"lsilogic\"\n\
         ddb.geometry.cylinders = \"{cylinders}\"\n\
         ddb.geometry.heads = \"255\"\n\
         ddb.geometry.sectors = \"63\"\n\
         ddb.toolsInstallType = \"4\"\n\
         ddb.toolsVersion = \"2147483647\"\n\
         ddb.virtualHWVersion = \"4\"\n"
    )
}

pub fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}
pub fn le64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips() {
        let h = Header::stream(12345, GD_AT_END);
        let b = h.encode();
        assert_eq!(&b[8..12], &[1, 0, 3, 0]);
        assert_eq!(Header::parse(&b), Some(h));
        assert!(descriptor(0xdeadbeef, 128, "image-disk1.vmdk")
            .contains("RW 128 SPARSE \"image-disk1.vmdk\"\n"));
    }
}
