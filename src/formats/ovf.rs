//! The OVF 1.0 descriptor and manifest for vSphere (DMTF DSP0243, docs/formats.md "OVF descriptor";
//! cloudfoundry/bosh-linux-stemcell-builder `stemcell_builder/stages/image_ovf_vmx/apply.sh` and
//! `image_ovf_generate/apply.sh`): what ovftool would produce from BOSH's VMX, written directly.
//!
//! The virtual machine: hardware family vmx-13 (ESXi 6.5+), guest ubuntu64Guest (CIM id 94),
//! an LSI Logic SCSI controller holding the disk, a SATA controller with an empty CD-ROM (the
//! vSphere CPI never adds one and swaps in the agent's `env.iso` on every create_vm), a VmxNet3
//! NIC (the CPI deletes NICs; harmless), and `firmware=efi` only for UEFI disks. Every `rasd:*`
//! element is in the schema's alphabetical order; the descriptor validates against DSP8023.

use super::{Firmware, OvfOptions};
use std::fmt::Write;

/// The disk file the descriptor references.
#[derive(Clone, Debug)]
pub struct OvfDisk {
    /// File name next to the .ovf (plain name, no directory).
    pub file_name: String,
    /// Size of the .vmdk file in bytes.
    pub file_size: u64,
    /// Virtual size of the disk in bytes.
    pub capacity: u64,
}

/// Escapes text for XML content and attribute values.
fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

/// One virtual hardware item, required (the CPI needs every one, the CD-ROM above all); `rasd` is a list of (element, value) in schema (alphabetical) order.
fn item(out: &mut String, rasd: &[(&str, String)]) {
    debug_assert!(
        rasd.windows(2).all(|w| w[0].0 < w[1].0),
        "rasd elements must be in schema order"
    );
    out.push_str("      <Item>\n");
    for (k, v) in rasd {
        let _ = writeln!(out, "        <rasd:{k}>{}</rasd:{k}>", xml(v));
    }
    out.push_str("      </Item>\n");
}

/// The OVF descriptor text for one VM with one streamOptimized disk.
pub fn descriptor(opts: &OvfOptions, disk: &OvfDisk) -> String {
    let name = xml(&opts.name);
    let s = |v: &str| v.to_string();
    let mut o = String::with_capacity(8192);
    o.push_str(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <Envelope xmlns=\"http://schemas.dmtf.org/ovf/envelope/1\" \
         xmlns:cim=\"http://schemas.dmtf.org/wbem/wscim/1/common\" \
         xmlns:ovf=\"http://schemas.dmtf.org/ovf/envelope/1\" \
         xmlns:rasd=\"http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData\" \
         xmlns:vmw=\"http://www.vmware.com/schema/ovf\" \
         xmlns:vssd=\"http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData\" \
         xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\">\n",
    );
    let _ = write!(
        o,
        "  <References>\n    <File ovf:href=\"{}\" ovf:id=\"file1\" ovf:size=\"{}\"/>\n  </References>\n",
        xml(&disk.file_name),
        disk.file_size
    );
    let _ = write!(
        o,
        "  <DiskSection>\n    <Info>Virtual disk information</Info>\n    \
         <Disk ovf:capacity=\"{}\" ovf:capacityAllocationUnits=\"byte\" ovf:diskId=\"vmdisk1\" ovf:fileRef=\"file1\" \
         ovf:format=\"http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized\"/>\n  </DiskSection>\n",
        disk.capacity
    );
    o.push_str(
        "  <NetworkSection>\n    <Info>The list of logical networks</Info>\n    \
         <Network ovf:name=\"VM Network\">\n      <Description>The VM Network network</Description>\n    \
         </Network>\n  </NetworkSection>\n",
    );
    let _ = write!(
        o,
        "  <VirtualSystem ovf:id=\"{name}\">\n    <Info>A virtual machine</Info>\n    <Name>{name}</Name>\n    \
         <OperatingSystemSection ovf:id=\"94\" vmw:osType=\"ubuntu64Guest\">\n      \
         <Info>The kind of installed guest operating system</Info>\n    </OperatingSystemSection>\n    \
         <VirtualHardwareSection>\n      <Info>Virtual hardware requirements</Info>\n      <System>\n        \
         <vssd:ElementName>Virtual Hardware Family</vssd:ElementName>\n        \
         <vssd:InstanceID>0</vssd:InstanceID>\n        \
         <vssd:VirtualSystemIdentifier>{name}</vssd:VirtualSystemIdentifier>\n        \
         <vssd:VirtualSystemType>vmx-13</vssd:VirtualSystemType>\n      </System>\n"
    );
    let cpus = opts.cpus.max(1);
    item(
        &mut o,
        &[
            ("AllocationUnits", s("hertz * 10^6")),
            ("Description", s("Number of Virtual CPUs")),
            ("ElementName", format!("{cpus} virtual CPU(s)")),
            ("InstanceID", s("1")),
            ("ResourceType", s("3")),
            ("VirtualQuantity", cpus.to_string()),
        ],
    );
    item(
        &mut o,
        &[
            ("AllocationUnits", s("byte * 2^20")),
            ("Description", s("Memory Size")),
            ("ElementName", format!("{}MB of memory", opts.memory_mib)),
            ("InstanceID", s("2")),
            ("ResourceType", s("4")),
            ("VirtualQuantity", opts.memory_mib.to_string()),
        ],
    );
    item(
        &mut o,
        &[
            ("Address", s("0")),
            ("Description", s("SCSI Controller")),
            ("ElementName", s("SCSI Controller 0")),
            ("InstanceID", s("3")),
            ("ResourceSubType", s("lsilogic")),
            ("ResourceType", s("6")),
        ],
    );
    item(
        &mut o,
        &[
            ("Address", s("0")),
            ("Description", s("SATA Controller")),
            ("ElementName", s("SATA Controller 0")),
            ("InstanceID", s("4")),
            ("ResourceSubType", s("vmware.sata.ahci")),
            ("ResourceType", s("20")),
        ],
    );
    item(
        &mut o,
        &[
            ("AddressOnParent", s("0")),
            ("ElementName", s("Hard Disk 1")),
            ("HostResource", s("ovf:/disk/vmdisk1")),
            ("InstanceID", s("5")),
            ("Parent", s("3")),
            ("ResourceType", s("17")),
        ],
    );
    item(
        &mut o,
        &[
            ("AddressOnParent", s("0")),
            ("AutomaticAllocation", s("false")),
            ("ElementName", s("CD-ROM 1")),
            ("InstanceID", s("6")),
            ("Parent", s("4")),
            ("ResourceSubType", s("vmware.cdrom.remotepassthrough")),
            ("ResourceType", s("15")),
        ],
    );
    item(
        &mut o,
        &[
            ("AddressOnParent", s("7")),
            ("AutomaticAllocation", s("true")),
            ("Connection", s("VM Network")),
            (
                "Description",
                s("VmxNet3 ethernet adapter on \"VM Network\""),
            ),
            ("ElementName", s("Network adapter 1")),
            ("InstanceID", s("7")),
            ("ResourceSubType", s("VmxNet3")),
            ("ResourceType", s("10")),
        ],
    );
    if opts.firmware == Firmware::Efi {
        o.push_str(
            "      <vmw:Config ovf:required=\"false\" vmw:key=\"firmware\" vmw:value=\"efi\"/>\n",
        );
    }
    // What BOSH's post-ovftool sed sets ("useGlobal" -> "manual").
    o.push_str("      <vmw:Config ovf:required=\"false\" vmw:key=\"tools.toolsUpgradePolicy\" vmw:value=\"manual\"/>\n");
    o.push_str("    </VirtualHardwareSection>\n  </VirtualSystem>\n</Envelope>\n");
    o
}

/// The manifest in ovftool's format: one `SHA1(<file>)= <lowercase hex>` line per file, in
/// the order given (the descriptor, then the disks; never the manifest itself).
pub fn manifest(files: &[(&str, [u8; 20])]) -> String {
    files
        .iter()
        .map(|(name, sha1)| format!("SHA1({name})= {}\n", hex::encode(sha1)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_uses_ovftool_spacing() {
        assert_eq!(
            manifest(&[("image.ovf", [0xab; 20])]),
            format!("SHA1(image.ovf)= {}\n", "ab".repeat(20))
        );
    }

    #[test]
    fn firmware_config_only_for_efi() {
        let disk = OvfDisk {
            file_name: "d.vmdk".into(),
            file_size: 1,
            capacity: 2,
        };
        let mut opts = OvfOptions {
            name: "a&b".into(),
            firmware: Firmware::Efi,
            cpus: 1,
            memory_mib: 512,
        };
        let efi = descriptor(&opts, &disk);
        assert!(efi.contains("vmw:key=\"firmware\" vmw:value=\"efi\""));
        assert!(efi.contains("<Name>a&amp;b</Name>"));
        opts.firmware = Firmware::Bios;
        assert!(!descriptor(&opts, &disk).contains("firmware"));
    }
}
