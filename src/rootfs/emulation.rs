//! Building another architecture's root (arm64 on an amd64 host): its programs run under the
//! host's static `qemu-<arch>` (qemu-user), registered with binfmt_misc inside the build's own
//! user namespace only. Since Linux 6.7 each user namespace can mount its own binfmt_misc; the
//! registration lives and dies with the namespace and the host's registrations stay as they
//! were. Host tools (tar, mke2fs, compression, digests) never run emulated: only what runs in
//! the chroot (maintainer scripts, stage commands) does.
//!
//! The namespace maps every uid and gid to itself (written by the parent, which is real root):
//! dpkg's chown to system users works, files keep their real owners on disk, and the mounts the
//! chroot needs are made before it, by real root, so overlayfs and sysfs behave as in a native
//! build.

use super::host_tools;
use crate::recipe::arch::Arch;
use anyhow::{bail, Context, Result};
use std::path::PathBuf;

/// A registered interpreter for one foreign architecture.
#[derive(Clone, Debug)]
pub struct Emulator {
    pub arch: Arch,
    /// The host's static qemu-user binary.
    pub interpreter: PathBuf,
}

/// The emulator a build of `arch` needs on this host: `None` when the host runs `arch` natively.
/// A host that cannot emulate it is one clear error, before any work starts.
pub fn for_arch(arch: Arch) -> Result<Option<Emulator>> {
    if Arch::host() == Some(arch) {
        return Ok(None);
    }
    emulator_from(arch, host_tools::find)
}

/// The emulator for a foreign `arch`, found with `find` (a tool name to its path).
fn emulator_from(arch: Arch, find: impl Fn(&str) -> Option<PathBuf>) -> Result<Option<Emulator>> {
    let tool = format!("qemu-{}", arch.kernel());
    let Some(interpreter) = find(&tool) else {
        bail!(
            "building {arch} on this {} host needs {tool}: not found (install the Debian package 'qemu-user', version 8.1 or later, without its recommends)",
            Arch::host().map_or("unknown", Arch::debian)
        );
    };
    let bytes = std::fs::read(&interpreter)
        .with_context(|| format!("{}: cannot read", interpreter.display()))?;
    if has_interpreter(&bytes) {
        bail!(
            "{}: dynamically linked; the chroot cannot load the host's libraries (install the Debian package 'qemu-user' 8.1 or later, or 'qemu-user-static')",
            interpreter.display()
        );
    }
    let filesystems = std::fs::read_to_string("/proc/filesystems").unwrap_or_default();
    if !filesystems
        .lines()
        .any(|l| l.trim_end().ends_with("binfmt_misc"))
    {
        bail!(
            "building {arch} needs binfmt_misc: this kernel does not have it (/proc/filesystems)"
        );
    }
    Ok(Some(Emulator { arch, interpreter }))
}

impl Emulator {
    /// The binfmt_misc registration line: ELF executables of the architecture run through the
    /// interpreter. Flags: F opens the interpreter now (it need not exist in the chroot),
    /// O hands it the open binary, C takes credentials from the binary (setuid programs).
    /// Named as QEMU's own (`qemu-aarch64`): mmdebstrap reads that entry to see the F flag.
    pub fn binfmt_rule(&self) -> String {
        let (magic, mask) = elf_magic(self.arch);
        let hex = |b: &[u8]| b.iter().map(|x| format!("\\x{x:02x}")).collect::<String>();
        format!(
            ":qemu-{}:M::{}:{}:{}:OCF",
            self.arch.kernel(),
            hex(&magic),
            hex(&mask),
            self.interpreter.display()
        )
    }
}

/// The first 20 bytes of the architecture's ELF executables and the bits that must match
/// (ELF64, little-endian, version 1, type EXEC or DYN, the machine), as QEMU's binfmt.d files.
fn elf_magic(arch: Arch) -> ([u8; 20], [u8; 20]) {
    let mut magic = *b"\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x00\x00";
    magic[18..20].copy_from_slice(&arch.elf_machine().to_le_bytes());
    let mask = *b"\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff";
    (magic, mask)
}

/// Whether an ELF64 executable names a program interpreter (is dynamically linked).
fn has_interpreter(elf: &[u8]) -> bool {
    let u16_at = |o: usize| {
        elf.get(o..o + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]) as usize)
    };
    let u64_at = |o: usize| {
        elf.get(o..o + 8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")) as usize)
    };
    let (Some(phoff), Some(size), Some(count)) = (u64_at(32), u16_at(54), u16_at(56)) else {
        return false;
    };
    (0..count).any(|i| {
        elf.get(phoff + i * size..phoff + i * size + 4)
            .is_some_and(|t| t == 3u32.to_le_bytes()) // PT_INTERP
    })
}

/// Shell function `emulated PROC TMP BINFMT RULE CMD...`: runs CMD in a new user and mount
/// namespace in which every id maps to itself and whose own binfmt_misc (mounted on BINFMT)
/// has RULE registered. PROC is a proc mount of the caller's PID namespace (the parent writes
/// the child's id maps there; a process cannot map ids it does not own), TMP an empty private
/// directory. Exits with CMD's status.
pub const SHELL_FUNCTION: &str = r#"
emulated() {
  e_proc=$1 e_tmp=$2 e_binfmt=$3 e_rule=$4
  shift 4
  mkfifo "$e_tmp/go"
  # A background command's stdin is /dev/null unless redirected from another descriptor.
  exec 3<&0
  unshare --user --mount --propagation private -- /bin/sh -c '
    set -eu
    read x < "$1/go"
    mount -t binfmt_misc binfmt_misc "$2"
    printf "%s" "$3" > "$2/register"
    shift 3
    exec "$@"' emulated "$e_tmp" "$e_binfmt" "$e_rule" "$@" <&3 3<&- &
  e_pid=$!
  # The map can be written once the child is in its namespace: until then it is refused.
  until echo "0 0 4294967295" 2>/dev/null > "$e_proc/$e_pid/uid_map"; do
    kill -0 "$e_pid" 2>/dev/null || { echo "cannot create a user namespace for emulation" >&2; exit 125; }
    sleep 0.01
  done
  echo "0 0 4294967295" > "$e_proc/$e_pid/gid_map"
  echo > "$e_tmp/go"
  e_rc=0
  wait "$e_pid" || e_rc=$?
  exit "$e_rc"
}
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arm64_rule_matches_qemus_own() {
        let e = Emulator {
            arch: Arch::Arm64,
            interpreter: "/usr/bin/qemu-aarch64".into(),
        };
        // /usr/share/qemu/binfmt.d/qemu-aarch64.conf of Debian's qemu-user, flags aside.
        assert_eq!(
            e.binfmt_rule(),
            r":qemu-aarch64:M::\x7f\x45\x4c\x46\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00:\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff:/usr/bin/qemu-aarch64:OCF"
        );
    }

    #[test]
    fn native_needs_no_emulator_and_dynamic_binaries_are_spotted() {
        assert!(for_arch(Arch::host().unwrap()).unwrap().is_none());
        let own = std::fs::read("/proc/self/exe").unwrap();
        assert!(
            has_interpreter(&own),
            "test binaries are dynamically linked"
        );
    }

    #[test]
    fn a_host_that_cannot_emulate_says_why_in_one_line() {
        let missing = emulator_from(Arch::Arm64, |_| None)
            .unwrap_err()
            .to_string();
        assert!(missing.starts_with("building arm64 on this amd64 host needs qemu-aarch64: not found (install the Debian package 'qemu-user'"), "{missing}");
        assert_eq!(missing.lines().count(), 1);
        // A dynamically linked emulator cannot run in the chroot, which lacks the host's libraries.
        let dynamic = emulator_from(Arch::Arm64, |_| Some("/proc/self/exe".into()))
            .unwrap_err()
            .to_string();
        assert!(dynamic.ends_with("dynamically linked; the chroot cannot load the host's libraries (install the Debian package 'qemu-user' 8.1 or later, or 'qemu-user-static')"), "{dynamic}");
    }
}
