//! Reading a stemcell tarball in one streaming pass: digests of the `.tgz`, every member with
//! its name problems, the manifest text, the small members, and a probe of the `image`
//! member (its SHA-1, its inner members and the format and virtual size of the disk inside),
//! optionally extracting the inner disk files (sparse) for a deep check.

use crate::tar_errors::describe;
use anyhow::{anyhow, bail, Context, Result};
use sha1::{Digest, Sha1};
use sha2::Sha256;
use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Members other than `image` larger than this are not kept in memory.
const SMALL_LIMIT: u64 = 64 << 20;

/// One tar member of the outer tarball.
#[derive(Clone, Debug)]
pub struct MemberInfo {
    /// The name exactly as stored.
    pub name: String,
    pub size: u64,
    pub regular: bool,
}

/// What is inside the `image` member.
#[derive(Clone, Debug, Default)]
pub struct ImageProbe {
    pub size: u64,
    pub sha1: String,
    /// `empty`, `gzip tar`, `bzip2`, or `unknown`.
    pub container: String,
    /// Inner members (gzip tar): name, size, detected format, virtual size.
    pub inner: Vec<InnerMember>,
    /// bzip2: the format and virtual size of the decompressed stream.
    pub bzip2_disk: Option<(String, u64)>,
    /// Where the inner files were extracted to (when asked).
    pub extracted: Vec<(String, PathBuf)>,
    /// Problems found while reading the image (corrupt inner gzip, ...).
    pub problems: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct InnerMember {
    pub name: String,
    pub size: u64,
    pub format: String,
    pub virtual_size: Option<u64>,
}

/// The result of reading a stemcell tarball.
#[derive(Clone, Debug, Default)]
pub struct Scan {
    pub size: u64,
    pub sha1: String,
    pub sha256: String,
    pub members: Vec<MemberInfo>,
    pub manifest_text: Option<String>,
    /// Small members other than `image` and `stemcell.MF`, in order, with their bytes.
    pub small: Vec<(String, Vec<u8>)>,
    pub image: Option<ImageProbe>,
    /// Member name problems (`./`, `..`, absolute, not a regular file, duplicate).
    pub problems: Vec<String>,
}

/// A reader that hashes what passes through it.
struct Hashing<R> {
    inner: R,
    sha1: Sha1,
    sha256: Option<Sha256>,
    len: u64,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.sha1.update(&buf[..n]);
        if let Some(h) = self.sha256.as_mut() {
            h.update(&buf[..n]);
        }
        self.len += n as u64;
        Ok(n)
    }
}

/// Checks a member name the way consumers need it: a plain relative name, no `./` prefix.
pub fn name_problem(name: &str) -> Option<String> {
    if name.starts_with("./") {
        Some(format!("member {name:?} starts with \"./\" (the BOSH CLI and CPIs look members up by exact name)"))
    } else if name.starts_with('/') {
        Some(format!("member {name:?} has an absolute path"))
    } else if name.split('/').any(|c| c == "..") {
        Some(format!(
            "member {name:?} escapes the extraction directory (\"..\")"
        ))
    } else if name.contains('/') {
        Some(format!("member {name:?} is not at the archive root"))
    } else {
        None
    }
}

/// Reads the stemcell at `path`. With `extract_to`, the image's inner files (or the
/// decompressed bzip2 stream, as `disk.vhd`) are written there, sparse.
pub fn read_stemcell(path: &Path, extract_to: Option<&Path>) -> Result<Scan> {
    let file = File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    let mut hashing = Hashing {
        inner: BufReader::with_capacity(1 << 20, file),
        sha1: Sha1::new(),
        sha256: Some(Sha256::new()),
        len: 0,
    };
    let mut scan = Scan::default();
    // Peek at the gzip magic without consuming it (the bytes stay in the BufReader).
    let is_gzip = io::BufRead::fill_buf(&mut hashing.inner)?.starts_with(&[0x1f, 0x8b]);
    if !is_gzip {
        bail!(
            "{}: not a gzip file (a stemcell must be a gzip-compressed tar)",
            path.display()
        );
    }
    let corrupt = |e: &dyn std::fmt::Display| {
        anyhow!(
            "{}: truncated or corrupt stemcell tarball: {e}",
            path.display()
        )
    };
    {
        let gz = flate2::read::MultiGzDecoder::new(&mut hashing);
        let mut archive = tar::Archive::new(gz);
        let entries = archive.entries().map_err(|e| corrupt(&describe(&e)))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| corrupt(&describe(&e)))?;
            let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            let size = entry.header().size().map_err(|e| corrupt(&describe(&e)))?;
            let regular = entry.header().entry_type().is_file();
            if let Some(p) = name_problem(&name) {
                scan.problems.push(p);
            }
            if !regular {
                scan.problems.push(format!(
                    "member {name:?} is not a regular file ({:?})",
                    entry.header().entry_type()
                ));
            }
            if scan.members.iter().any(|m| m.name == name) {
                scan.problems.push(format!("member {name:?} appears twice"));
            }
            scan.members.push(MemberInfo {
                name: name.clone(),
                size,
                regular,
            });
            let base = name.strip_prefix("./").unwrap_or(&name);
            if regular && base == "stemcell.MF" {
                let mut text = String::new();
                (&mut entry)
                    .take(SMALL_LIMIT)
                    .read_to_string(&mut text)
                    .map_err(|e| anyhow!("{}: stemcell.MF: {e}", path.display()))?;
                scan.manifest_text = Some(text);
            } else if regular && base == "image" {
                scan.image = Some(
                    probe_image(&mut entry, size, extract_to)
                        .map_err(|e| corrupt(&format!("{e:#}")))?,
                );
            } else if regular && size <= SMALL_LIMIT {
                let mut data = Vec::with_capacity(size as usize);
                entry.read_to_end(&mut data).map_err(|e| corrupt(&e))?;
                scan.small.push((name.clone(), data));
            }
            io::copy(&mut entry, &mut io::sink()).map_err(|e| corrupt(&e))?;
        }
        // Read to the end of the gzip stream so its CRC and length are checked.
        let mut gz = archive.into_inner();
        io::copy(&mut gz, &mut io::sink()).map_err(|e| corrupt(&e))?;
    }
    io::copy(&mut hashing, &mut io::sink())?;
    scan.size = hashing.len;
    scan.sha1 = hex::encode(hashing.sha1.finalize());
    scan.sha256 = hex::encode(hashing.sha256.take().expect("sha256 kept").finalize());
    Ok(scan)
}

/// Looks at the start (and for VHD the end) of a disk image: (format, virtual size).
pub fn identify(head: &[u8], tail: &[u8], size: u64) -> (String, Option<u64>) {
    let be64 = |b: &[u8], at: usize| {
        b.get(at..at + 8)
            .map(|s| u64::from_be_bytes(s.try_into().unwrap()))
    };
    let le64 = |b: &[u8], at: usize| {
        b.get(at..at + 8)
            .map(|s| u64::from_le_bytes(s.try_into().unwrap()))
    };
    if head.starts_with(b"QFI\xfb") {
        let version = head
            .get(4..8)
            .map(|v| u32::from_be_bytes(v.try_into().unwrap()))
            .unwrap_or(0);
        let compat = if version == 2 { "0.10" } else { "1.1" };
        return (format!("qcow2 (compat {compat})"), be64(head, 24));
    }
    if head.starts_with(b"KDMV") {
        return ("vmdk".into(), le64(head, 12).map(|s| s * 512));
    }
    if head.starts_with(b"conectix") {
        return ("vhd (dynamic)".into(), be64(head, 48));
    }
    if tail.len() >= 512 && tail[tail.len() - 512..].starts_with(b"conectix") {
        return ("vhd (fixed)".into(), be64(&tail[tail.len() - 512..], 48));
    }
    if head.starts_with(b"<?xml") {
        return ("xml".into(), None);
    }
    ("raw".into(), Some(size))
}

/// Copies a stream to `dest`, leaving holes for all-zero 64 KiB blocks; keeps the first and
/// last 512 bytes. Returns (head, tail, length).
fn copy_probe(src: &mut dyn Read, mut dest: Option<&mut File>) -> Result<(Vec<u8>, Vec<u8>, u64)> {
    let mut buf = vec![0u8; 64 * 1024];
    let (mut head, mut tail, mut len) = (Vec::new(), Vec::new(), 0u64);
    loop {
        let mut filled = 0;
        while filled < buf.len() {
            let n = src.read(&mut buf[filled..])?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        if filled == 0 {
            break;
        }
        let chunk = &buf[..filled];
        if head.len() < 512 {
            head.extend_from_slice(&chunk[..chunk.len().min(512 - head.len())]);
        }
        tail.extend_from_slice(chunk);
        if tail.len() > 512 {
            tail.drain(..tail.len() - 512);
        }
        if let Some(f) = dest.as_deref_mut() {
            if crate::formats::source::is_zero(chunk) {
                f.seek(SeekFrom::Current(filled as i64))?;
            } else {
                f.write_all(chunk)?;
            }
        }
        len += filled as u64;
    }
    if let Some(f) = dest {
        f.set_len(len)?;
    }
    Ok((head, tail, len))
}

fn probe_image(entry: &mut dyn Read, size: u64, extract_to: Option<&Path>) -> Result<ImageProbe> {
    let mut hashing = Hashing {
        inner: entry,
        sha1: Sha1::new(),
        sha256: None,
        len: 0,
    };
    let mut probe = ImageProbe {
        size,
        ..Default::default()
    };
    let mut magic = [0u8; 3];
    let mut got = 0;
    while got < 3 {
        let n = hashing.read(&mut magic[got..])?;
        if n == 0 {
            break;
        }
        got += n;
    }
    let rest = io::Cursor::new(magic[..got].to_vec()).chain(&mut hashing);
    if got == 0 {
        probe.container = "empty".into();
    } else if magic[..2] == [0x1f, 0x8b] {
        probe.container = "gzip tar".into();
        let mut archive = tar::Archive::new(flate2::read::MultiGzDecoder::new(rest));
        let result = (|| -> Result<()> {
            for e in archive.entries()? {
                let mut e = e?;
                let name = String::from_utf8_lossy(&e.path_bytes()).into_owned();
                let isize = e.header().size()?;
                let mut dest = match (
                    extract_to,
                    e.header().entry_type().is_file(),
                    name_problem(&name),
                ) {
                    (Some(dir), true, None) => {
                        let p = dir.join(&name);
                        probe.extracted.push((name.clone(), p.clone()));
                        Some(
                            File::create(&p)
                                .with_context(|| format!("{}: cannot create", p.display()))?,
                        )
                    }
                    _ => None,
                };
                let (head, tail, len) = copy_probe(&mut e, dest.as_mut())?;
                let (format, vsize) = identify(&head, &tail, len);
                probe.inner.push(InnerMember {
                    name,
                    size: isize,
                    format,
                    virtual_size: vsize,
                });
            }
            let mut inner = archive.into_inner();
            io::copy(&mut inner, &mut io::sink())?;
            Ok(())
        })();
        if let Err(e) = result {
            probe
                .problems
                .push(format!("image: the inner gzip tar is corrupt: {e:#}"));
        }
    } else if &magic[..got] == b"BZh" {
        probe.container = "bzip2".into();
        // Ours is one stream; pbzip2 and older builds of ours concatenate several: read them all.
        let mut dec = bzip2::read::MultiBzDecoder::new(rest);
        let mut dest = match extract_to {
            Some(dir) => {
                let p = dir.join("disk.vhd");
                probe.extracted.push(("disk.vhd".into(), p.clone()));
                Some(File::create(&p)?)
            }
            None => None,
        };
        match copy_probe(&mut dec, dest.as_mut()) {
            Ok((head, tail, len)) => {
                let (format, vsize) = identify(&head, &tail, len);
                probe.bzip2_disk = Some((format, vsize.unwrap_or(len)));
            }
            Err(e) => probe
                .problems
                .push(format!("image: the bzip2 stream is corrupt: {e:#}")),
        }
    } else {
        probe.container = "unknown".into();
    }
    io::copy(&mut hashing, &mut io::sink())?;
    probe.sha1 = hex::encode(hashing.sha1.finalize());
    Ok(probe)
}
