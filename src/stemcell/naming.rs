//! Stemcell names and tarball file names (cloudfoundry/bosh-linux-stemcell-builder
//! `bosh-stemcell/lib/bosh/stemcell/archive_filename.rb` and `definition.rb`).
//!
//! `bosh-<infra>-<hypervisor>-<os>[-go_agent][-<arch>][<format suffix>]` is the stemcell name;
//! the tarball is `[light-]bosh-stemcell-<version>-<infra>-<hypervisor>-<os>[-go_agent][-<arch>][<suffix>].tgz`.
//! amd64 stemcells keep the official names; others name their architecture after the OS, as the
//! Cloud Foundry community's ARM64 RFC (cloudfoundry/community) names them
//! (`bosh-aws-xen-hvm-ubuntu-noble-arm64`): a Director holds both lines side by side.

use crate::recipe::arch::Arch;
use anyhow::{bail, Result};

/// What identifies a stemcell line, before the version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StemcellId {
    /// `openstack`, `aws`, ...
    pub infrastructure: String,
    /// The hypervisor part of the name (aws `xen-hvm`, not the manifest's `xen`).
    pub name_hypervisor: String,
    /// `ubuntu-jammy`, `ubuntu-noble`, ...
    pub operating_system: String,
    /// `-raw` for OpenStack's second tarball, empty for the infrastructure's default format.
    pub format_suffix: String,
    pub arch: Arch,
}

/// Releases up to jammy carry `-go_agent` in their names; noble dropped it (PR #385).
pub fn agent_suffix(operating_system: &str) -> &'static str {
    match operating_system {
        "ubuntu-trusty" | "ubuntu-xenial" | "ubuntu-bionic" | "ubuntu-jammy" => "-go_agent",
        _ => "",
    }
}

impl StemcellId {
    /// The part shared by the stemcell name and the tarball name.
    fn stem(&self) -> String {
        let arch = match self.arch {
            Arch::Amd64 => String::new(),
            other => format!("-{other}"),
        };
        format!(
            "{}-{}-{}{}{arch}{}",
            self.infrastructure,
            self.name_hypervisor,
            self.operating_system,
            agent_suffix(&self.operating_system),
            self.format_suffix
        )
    }

    /// The manifest `name`, e.g. `bosh-openstack-kvm-ubuntu-jammy-go_agent-raw`.
    pub fn stemcell_name(&self) -> String {
        format!("bosh-{}", self.stem())
    }

    /// The heavy tarball name, e.g. `bosh-stemcell-1.606-aws-xen-hvm-ubuntu-jammy-go_agent.tgz`.
    pub fn tarball_name(&self, version: &str) -> String {
        format!("bosh-stemcell-{version}-{}.tgz", self.stem())
    }
}

/// The light tarball name derived from a stemcell name and version: `bosh-X` becomes
/// `light-bosh-stemcell-<version>-X.tgz`.
pub fn light_tarball_name(stemcell_name: &str, version: &str) -> Result<String> {
    let Some(rest) = stemcell_name.strip_prefix("bosh-") else {
        bail!("stemcell name {stemcell_name:?} does not start with \"bosh-\"");
    };
    Ok(format!("light-bosh-stemcell-{version}-{rest}.tgz"))
}

/// Names and versions may only use `[-0-9A-Za-z_+.]` (the Director's model validation).
pub fn check_name_chars(what: &str, value: &str) -> Result<()> {
    if value.is_empty() {
        bail!("{what} is empty");
    }
    if let Some(c) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "-_+.".contains(*c)))
    {
        bail!("{what} {value:?} contains {c:?}; only [-0-9A-Za-z_+.] are allowed");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(infra: &str, hyp: &str, os: &str, suffix: &str) -> StemcellId {
        StemcellId {
            infrastructure: infra.into(),
            name_hypervisor: hyp.into(),
            operating_system: os.into(),
            format_suffix: suffix.into(),
            arch: Arch::Amd64,
        }
    }

    #[test]
    fn arm64_names_its_architecture_after_the_os() {
        let a = StemcellId {
            arch: Arch::Arm64,
            ..id("openstack", "kvm", "ubuntu-noble", "-raw")
        };
        assert_eq!(
            a.stemcell_name(),
            "bosh-openstack-kvm-ubuntu-noble-arm64-raw"
        );
        assert_eq!(
            a.tarball_name("1.606"),
            "bosh-stemcell-1.606-openstack-kvm-ubuntu-noble-arm64-raw.tgz"
        );
    }

    #[test]
    fn official_examples() {
        let v = id("vsphere", "esxi", "ubuntu-jammy", "");
        assert_eq!(
            v.tarball_name("1.606"),
            "bosh-stemcell-1.606-vsphere-esxi-ubuntu-jammy-go_agent.tgz"
        );
        let a = id("aws", "xen-hvm", "ubuntu-jammy", "");
        assert_eq!(a.stemcell_name(), "bosh-aws-xen-hvm-ubuntu-jammy-go_agent");
        assert_eq!(
            a.tarball_name("1.606"),
            "bosh-stemcell-1.606-aws-xen-hvm-ubuntu-jammy-go_agent.tgz"
        );
        let o = id("openstack", "kvm", "ubuntu-jammy", "-raw");
        assert_eq!(
            o.tarball_name("1.606"),
            "bosh-stemcell-1.606-openstack-kvm-ubuntu-jammy-go_agent-raw.tgz"
        );
        assert_eq!(
            o.stemcell_name(),
            "bosh-openstack-kvm-ubuntu-jammy-go_agent-raw"
        );
        let n = id("vsphere", "esxi", "ubuntu-noble", "");
        assert_eq!(
            n.tarball_name("1.562"),
            "bosh-stemcell-1.562-vsphere-esxi-ubuntu-noble.tgz"
        );
        assert_eq!(
            id("google", "kvm", "ubuntu-noble", "").stemcell_name(),
            "bosh-google-kvm-ubuntu-noble"
        );
        assert_eq!(
            light_tarball_name("bosh-google-kvm-ubuntu-jammy-go_agent", "1.606").unwrap(),
            "light-bosh-stemcell-1.606-google-kvm-ubuntu-jammy-go_agent.tgz"
        );
        assert!(check_name_chars("version", "1.606").is_ok());
        assert!(check_name_chars("version", "1 606").is_err());
    }
}
