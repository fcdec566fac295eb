//! VHD byte layouts (the Microsoft "Virtual Hard Disk Image Format Specification"). All integers are big-endian.

/// Dynamic VHD block size: 2 MiB, the only size XenServer's vhd-util accepts (it computes
/// `current_size >> 21`).
pub const BLOCK_SIZE: u64 = 2 << 20;
/// Sector bitmap in front of each 2 MiB block: 4096 bits, exactly one sector.
pub const BITMAP_SIZE: u64 = 512;
/// Absolute offset of the dynamic header (right after the footer copy).
pub const HEADER_OFFSET: u64 = 512;
/// Absolute offset of the BAT (right after the 1024-byte dynamic header).
pub const BAT_OFFSET: u64 = 1536;
/// BAT entry of a block that is not allocated (reads as zeros).
pub const UNALLOCATED: u32 = 0xFFFF_FFFF;
/// Seconds between the Unix epoch and the VHD epoch (2000-01-01 00:00:00 UTC).
pub const VHD_EPOCH: u64 = 946_684_800;
/// Largest dynamic disk: the BAT stores u32 sector numbers and vhd-util's limit is 2040 GiB.
pub const MAX_DYNAMIC_SIZE: u64 = 2040 << 30;

pub const FOOTER_COOKIE: &[u8; 8] = b"conectix";
pub const HEADER_COOKIE: &[u8; 8] = b"cxsparse";
pub const VERSION: u32 = 0x0001_0000;
/// Bit 1 is "reserved, must be set"; bit 0 is "temporary".
pub const FEATURES_RESERVED: u32 = 0x2;
/// "win ", 10.0 on "Wi2k": both qemu 7.2 and qemu 10 then take the size from current_size
/// (not from the truncating CHS product), and Hyper-V/Azure do the same (docs/formats.md "VHD creator and size").
pub const CREATOR_APP: &[u8; 4] = b"win ";
pub const CREATOR_VERSION: u32 = 0x000A_0000;
pub const CREATOR_HOST: &[u8; 4] = b"Wi2k";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiskType {
    Fixed = 2,
    Dynamic = 3,
}

/// Cylinders, heads, sectors per track.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Chs {
    pub cylinders: u16,
    pub heads: u8,
    pub sectors: u8,
}

impl Chs {
    /// The packed form vhd-util compares: `cyl << 16 | heads << 8 | spt`.
    pub fn packed(self) -> u32 {
        (self.cylinders as u32) << 16 | (self.heads as u32) << 8 | self.sectors as u32
    }

    /// Bytes the geometry addresses (usually less than the size it was computed from).
    pub fn bytes(self) -> u64 {
        self.cylinders as u64 * self.heads as u64 * self.sectors as u64 * 512
    }
}

/// The VHD specification's CHS algorithm (also blktap's `vhd_chs` in `vhd/lib/libvhd.c`). Every division
/// rounds down, so the result never addresses more than `size`.
pub fn chs(size: u64) -> Chs {
    let total = (size / 512).min(65535 * 16 * 255);
    let (spt, heads, cth);
    if total >= 65535 * 16 * 63 {
        spt = 255;
        heads = 16;
        cth = total / 255;
    } else {
        let mut s = 17;
        let mut c = total / 17;
        let mut h = c.div_ceil(1024).max(4);
        if c >= h * 1024 || h > 16 {
            s = 31;
            h = 16;
            c = total / 31;
        }
        if c >= h * 1024 {
            s = 63;
            h = 16;
            c = total / 63;
        }
        (spt, heads, cth) = (s, h, c);
    }
    Chs {
        cylinders: (cth / heads) as u16,
        heads: heads as u8,
        sectors: spt as u8,
    }
}

/// One's complement of the byte sum, with the checksum field counted as zero.
pub fn checksum(bytes: &[u8], field: usize) -> u32 {
    let sum = bytes
        .iter()
        .enumerate()
        .filter(|(i, _)| !(field..field + 4).contains(i))
        .fold(0u32, |s, (_, &b)| s.wrapping_add(b as u32));
    !sum
}

/// Number of BAT entries: exactly ceil(size / block), never rounded further (Azure rejected
/// a BAT one entry too long).
pub fn bat_entries(size: u64) -> u64 {
    size.div_ceil(BLOCK_SIZE)
}

/// Bytes the BAT occupies on disk, padded to a sector.
pub fn bat_bytes(size: u64) -> u64 {
    (bat_entries(size) * 4).div_ceil(512) * 512
}

/// The 512-byte footer (and, for dynamic disks, its identical copy at offset 0).
#[derive(Clone, Debug)]
pub struct Footer {
    pub disk_type: DiskType,
    /// VHD timestamp: seconds since 2000-01-01 UTC.
    pub timestamp: u32,
    pub size: u64,
    pub unique_id: [u8; 16],
}

impl Footer {
    pub fn encode(&self) -> [u8; 512] {
        let mut b = [0u8; 512];
        b[0..8].copy_from_slice(FOOTER_COOKIE);
        b[8..12].copy_from_slice(&FEATURES_RESERVED.to_be_bytes());
        b[12..16].copy_from_slice(&VERSION.to_be_bytes());
        let data_offset = match self.disk_type {
            DiskType::Fixed => u64::MAX,
            DiskType::Dynamic => HEADER_OFFSET,
        };
        b[16..24].copy_from_slice(&data_offset.to_be_bytes());
        b[24..28].copy_from_slice(&self.timestamp.to_be_bytes());
        b[28..32].copy_from_slice(CREATOR_APP);
        b[32..36].copy_from_slice(&CREATOR_VERSION.to_be_bytes());
        b[36..40].copy_from_slice(CREATOR_HOST);
        b[40..48].copy_from_slice(&self.size.to_be_bytes());
        b[48..56].copy_from_slice(&self.size.to_be_bytes());
        let g = chs(self.size);
        b[56..58].copy_from_slice(&g.cylinders.to_be_bytes());
        b[58] = g.heads;
        b[59] = g.sectors;
        b[60..64].copy_from_slice(&(self.disk_type as u32).to_be_bytes());
        b[68..84].copy_from_slice(&self.unique_id);
        let sum = checksum(&b, 64);
        b[64..68].copy_from_slice(&sum.to_be_bytes());
        b
    }
}

/// The 1024-byte dynamic disk header at [`HEADER_OFFSET`].
pub fn encode_dynamic_header(size: u64) -> [u8; 1024] {
    let mut b = [0u8; 1024];
    b[0..8].copy_from_slice(HEADER_COOKIE);
    b[8..16].copy_from_slice(&u64::MAX.to_be_bytes());
    b[16..24].copy_from_slice(&BAT_OFFSET.to_be_bytes());
    b[24..28].copy_from_slice(&VERSION.to_be_bytes());
    b[28..32].copy_from_slice(&(bat_entries(size) as u32).to_be_bytes());
    b[32..36].copy_from_slice(&(BLOCK_SIZE as u32).to_be_bytes());
    let sum = checksum(&b, 36);
    b[36..40].copy_from_slice(&sum.to_be_bytes());
    b
}

pub fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes(b[at..at + 2].try_into().unwrap())
}
pub fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().unwrap())
}
pub fn be64(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(b[at..at + 8].try_into().unwrap())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chs_matches_the_spec_examples() {
        // docs/formats.md "VHD creator and size": 70 MiB gives 936/9/17.
        assert_eq!(
            chs(70 << 20),
            Chs {
                cylinders: 936,
                heads: 9,
                sectors: 17
            }
        );
        assert_eq!(chs(70 << 20).bytes(), 73_322_496);
        // Maximum geometry from 65535*16*255 sectors up.
        assert_eq!(
            chs(4 << 40),
            Chs {
                cylinders: 65535,
                heads: 16,
                sectors: 255
            }
        );
        for size in [1u64 << 20, 5 << 30, 127 << 30, 2040 << 30] {
            assert!(chs(size).bytes() <= size, "{size}");
        }
    }

    #[test]
    fn footer_checksum_verifies() {
        let f = Footer {
            disk_type: DiskType::Dynamic,
            timestamp: 1,
            size: 70 << 20,
            unique_id: [7; 16],
        };
        let b = f.encode();
        assert_eq!(be32(&b, 64), checksum(&b, 64));
        assert_eq!(bat_entries((70 << 20) + 512), 36);
        assert_eq!(bat_bytes(70 << 20), 512);
    }
}
