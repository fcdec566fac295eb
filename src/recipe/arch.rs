//! CPU architectures a stemcell can be built for. Named as Debian names them (`amd64`,
//! `arm64`): that is what `--arch`, the OS definitions, the infrastructure files and dpkg use.
//! The other spellings (the kernel's `x86_64`/`aarch64`, ELF machine numbers, UEFI's removable
//! boot file) are derived here, in one place.

use anyhow::{bail, Result};

/// The architecture built when none is named.
pub const DEFAULT: Arch = Arch::Amd64;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Arch {
    #[default]
    Amd64,
    Arm64,
}

impl Arch {
    pub const ALL: [Arch; 2] = [Arch::Amd64, Arch::Arm64];

    /// Parses a Debian architecture name; anything else is an error listing the valid ones.
    pub fn parse(name: &str) -> Result<Arch> {
        match name {
            "amd64" => Ok(Arch::Amd64),
            "arm64" => Ok(Arch::Arm64),
            other => bail!(
                "unknown architecture `{other}`: expected one of {}",
                Arch::ALL.map(Arch::debian).join(", ")
            ),
        }
    }

    /// Debian's name (dpkg --print-architecture): `amd64`, `arm64`.
    pub fn debian(self) -> &'static str {
        match self {
            Arch::Amd64 => "amd64",
            Arch::Arm64 => "arm64",
        }
    }

    /// The kernel's name (`uname -m`), also QEMU's: `x86_64`, `aarch64`.
    pub fn kernel(self) -> &'static str {
        match self {
            Arch::Amd64 => "x86_64",
            Arch::Arm64 => "aarch64",
        }
    }

    /// ELF `e_machine` of the architecture's executables.
    pub fn elf_machine(self) -> u16 {
        match self {
            Arch::Amd64 => 62,  // EM_X86_64
            Arch::Arm64 => 183, // EM_AARCH64
        }
    }

    /// The architecture of this build host.
    pub fn host() -> Option<Arch> {
        match std::env::consts::ARCH {
            "x86_64" => Some(Arch::Amd64),
            "aarch64" => Some(Arch::Arm64),
            _ => None,
        }
    }

    /// The architecture of a 64-bit little-endian ELF executable, from its first 20 bytes.
    pub fn of_elf(header: &[u8]) -> Option<Arch> {
        if header.len() < 20 || &header[..4] != b"\x7fELF" || header[4] != 2 || header[5] != 1 {
            return None;
        }
        let machine = u16::from_le_bytes([header[18], header[19]]);
        Arch::ALL.into_iter().find(|a| a.elf_machine() == machine)
    }
}

impl std::fmt::Display for Arch {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(self.debian())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_is_an_error() {
        for a in Arch::ALL {
            assert_eq!(Arch::parse(a.debian()).unwrap(), a);
        }
        assert_eq!(
            Arch::parse("aarch64").unwrap_err().to_string(),
            "unknown architecture `aarch64`: expected one of amd64, arm64"
        );
    }

    #[test]
    fn elf_header_names_the_architecture() {
        let own = std::fs::read("/proc/self/exe").unwrap();
        assert_eq!(Arch::of_elf(&own[..20]), Arch::host());
        let mut arm = own[..20].to_vec();
        arm[18..20].copy_from_slice(&183u16.to_le_bytes());
        assert_eq!(Arch::of_elf(&arm), Some(Arch::Arm64));
        assert_eq!(Arch::of_elf(b"#!/bin/sh\n"), None);
    }
}
