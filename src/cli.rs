//! Command line: clap definitions and one small function per command that calls the library.
//! No logic lives here.

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use stemcell::recipe::arch::Arch;

#[derive(Parser, Debug)]
#[command(
    name = "stemcell",
    version,
    about = "Build, convert, package and check BOSH stemcells"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Convert a raw disk into a cloud disk format.
    Convert(ConvertArgs),
    /// Package an existing bootable raw disk as a heavy stemcell.
    Package(PackageArgs),
    /// Make a light stemcell from a heavy one and the cloud's image ids.
    Light(LightArgs),
    /// Show what a stemcell holds (manifest, members, formats, digests).
    Inspect(InspectArgs),
    /// Check deeply that a consumer would accept a stemcell; lists every problem found.
    Verify(InspectArgs),
    /// Build the OS image tarball.
    OsImage(OsImageArgs),
    /// Show the resolved stage list and which stages are cached; executes nothing.
    Plan(PlanArgs),
    /// Run the image tests against an OS image or stemcell.
    TestImage(TestImageArgs),
    /// Build stemcells for one or more infrastructures.
    Build(BuildArgs),
    /// Compare two stemcells: manifests, packages, SBOM components, sizes, and (--files) the
    /// root filesystem's files.
    Diff(DiffArgs),
    /// What the work directory caches, and pruning it.
    #[command(subcommand)]
    Cache(CacheCommand),
    /// Boot a stemcell under QEMU as its cloud would and (with --ping) wait for its agent.
    Boot(BootArgs),
    /// (internal) Answer one metadata request on stdin/stdout; QEMU runs it per connection.
    #[command(hide = true)]
    BootMetadata(BootMetadataArgs),
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum FormatName {
    Qcow2,
    Vhd,
    VhdFixed,
    Vmdk,
    Ova,
    Raw,
}

#[derive(Args, Debug)]
pub struct ConvertArgs {
    /// Format to write: qcow2, vhd (dynamic), vhd-fixed, vmdk (streamOptimized), ova
    /// (OVF + VMDK in a tar), raw (sparse copy).
    #[arg(long, value_enum)]
    pub format: FormatName,
    /// qcow2: compat level, 0.10 (version 2) or 1.1 (version 3).
    #[arg(long, default_value = "0.10")]
    pub compat: String,
    /// qcow2: write uncompressed clusters.
    #[arg(long)]
    pub no_compress: bool,
    /// ova: virtual machine name in the descriptor.
    #[arg(long, default_value = "stemcell")]
    pub name: String,
    /// ova: firmware the VM boots with.
    #[arg(long, default_value = "efi", value_parser = ["efi", "bios"])]
    pub firmware: String,
    /// Overwrite OUT if it exists.
    #[arg(long)]
    pub force: bool,
    /// Raw disk image to read.
    pub raw: PathBuf,
    /// File to write (its directory is created).
    pub out: PathBuf,
}

#[derive(Args, Debug)]
pub struct PackageArgs {
    /// Infrastructure whose outputs to pack (a file name in infrastructures/, listed below).
    #[arg(long)]
    pub infrastructure: String,
    /// Operating system name, e.g. ubuntu-noble; the manifest's operating_system.
    #[arg(long)]
    pub os: String,
    /// The disk's architecture: amd64 or arm64 (names and cloud_properties.architecture).
    #[arg(long, default_value = "amd64", value_parser = parse_arch)]
    pub arch: Arch,
    /// Stemcell version, e.g. 1.606 (written as a quoted string).
    #[arg(long)]
    pub version: String,
    /// Bootable raw disk.
    #[arg(long)]
    pub disk: PathBuf,
    /// `dpkg -l` output to ship as packages.txt (empty when absent).
    #[arg(long)]
    pub packages: Option<PathBuf>,
    /// Dev tools file list to ship as dev_tools_file_list.txt (empty when absent).
    #[arg(long)]
    pub dev_tools: Option<PathBuf>,
    /// Only the outputs with this `cloud_properties.disk_format` (repeatable; default: every
    /// output of the infrastructure, e.g. openstack's qcow2 and raw tarballs).
    #[arg(long = "disk-format", value_name = "FORMAT")]
    pub disk_formats: Vec<String>,
    /// The disk's firmware, for the OVF (vsphere).
    #[arg(long, default_value = "efi", value_parser = ["efi", "bios"])]
    pub firmware: String,
    /// Directory for the stemcell tarballs (created).
    #[arg(short = 'o', long = "output-dir")]
    pub output_dir: PathBuf,
    /// Overwrite existing tarballs.
    #[arg(long)]
    pub force: bool,
}

#[derive(Args, Debug)]
pub struct LightArgs {
    /// Heavy stemcell tarball.
    #[arg(long)]
    pub from: PathBuf,
    /// AWS: REGION=AMI-ID, repeatable.
    #[arg(long = "ami", value_name = "REGION=AMI")]
    pub amis: Vec<String>,
    /// Google: the image URL.
    #[arg(long)]
    pub image_url: Option<String>,
    /// OpenStack: the Glance image id.
    #[arg(long)]
    pub image_id: Option<String>,
    /// Directory for the light stemcell (created).
    #[arg(short = 'o', long = "output-dir", default_value = ".")]
    pub output_dir: PathBuf,
    /// Overwrite an existing light stemcell.
    #[arg(long)]
    pub force: bool,
}

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// Stemcell tarball (.tgz).
    pub file: PathBuf,
    /// Print one JSON document on stdout (field names in the README).
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct OsImageArgs {
    /// Operating system to build (a file name in stages/os/, listed below).
    #[arg(long, default_value = "ubuntu-noble")]
    pub os: String,
    /// Architecture to build for: amd64 or arm64 (another than the host's runs emulated).
    #[arg(long, default_value = "amd64", value_parser = parse_arch)]
    pub arch: Arch,
    /// Archive URL to bootstrap from, instead of the OS definition's (or the host's, for Debian).
    #[arg(long)]
    pub mirror: Option<String>,
    /// Restart from this stage, ignoring the cache for it and every stage after it.
    #[arg(long)]
    pub from_stage: Option<String>,
    /// Cache and work directory.
    #[arg(long, default_value = "/var/cache/stemcell")]
    pub work_dir: PathBuf,
    /// The OS image tarball to write (its directory is created); the package and dev-tools
    /// lists are written beside it as <stem>.packages.txt and <stem>.dev_tools_file_list.txt.
    #[arg(short = 'o', long = "output")]
    pub output: PathBuf,
    /// Overwrite existing outputs.
    #[arg(long)]
    pub force: bool,
}

#[derive(Args, Debug)]
pub struct PlanArgs {
    /// Infrastructure to plan the stemcell stages for (repeatable; none: the OS image only).
    #[arg(long = "infrastructure")]
    pub infrastructures: Vec<String>,
    /// Stemcell version (stemcell phase; default 0000).
    #[arg(long)]
    pub version: Option<String>,
    #[command(flatten)]
    pub inputs: InputArgs,
    /// A template variable, e.g. `passwords.vcap=$6$...`; repeatable.
    #[arg(long = "var", value_name = "NAME=VALUE")]
    pub vars: Vec<String>,
    /// Cache and work directory whose layers are reported as cached.
    #[arg(long, default_value = "/var/cache/stemcell")]
    pub work_dir: PathBuf,
    /// Print one JSON document on stdout (field names in the README).
    #[arg(long)]
    pub json: bool,
}

/// What `build` and `plan` both take: the OS, the archive and the build inputs.
#[derive(Args, Debug)]
pub struct InputArgs {
    /// Operating system (a file name in stages/os/, listed below). Default: ubuntu-noble, or
    /// with --os-image the OS its /etc/os-release names.
    #[arg(long)]
    pub os: Option<String>,
    /// Architecture to build for: amd64 or arm64 (another than the host's runs emulated).
    #[arg(long, default_value = "amd64", value_parser = parse_arch)]
    pub arch: Arch,
    /// Build on this OS image tarball (from `stemcell os-image`) instead of running the OS
    /// image stages.
    #[arg(long, value_name = "TGZ")]
    pub os_image: Option<PathBuf>,
    /// Archive URL to bootstrap from, instead of the OS definition's (or the host's, for Debian).
    #[arg(long)]
    pub mirror: Option<String>,
    /// The BOSH agent binary: PATH or URL (installed as /var/vcap/bosh/bin/bosh-agent).
    #[arg(long, value_name = "PATH|URL")]
    pub agent: Option<String>,
    /// The sha256 the agent binary must have.
    #[arg(long, value_name = "HEX")]
    pub agent_sha256: Option<String>,
    /// The davcli blobstore CLI: PATH or URL (installed as /var/vcap/bosh/bin/bosh-blobstore-dav).
    #[arg(long, value_name = "PATH|URL")]
    pub blobstore_dav: Option<String>,
    /// The sha256 of --blobstore-dav.
    #[arg(long, value_name = "HEX")]
    pub blobstore_dav_sha256: Option<String>,
    /// The GCS blobstore CLI: PATH or URL (installed as bosh-blobstore-gcs).
    #[arg(long, value_name = "PATH|URL")]
    pub blobstore_gcs: Option<String>,
    /// The sha256 of --blobstore-gcs.
    #[arg(long, value_name = "HEX")]
    pub blobstore_gcs_sha256: Option<String>,
    /// The S3 blobstore CLI: PATH or URL (installed as bosh-blobstore-s3).
    #[arg(long, value_name = "PATH|URL")]
    pub blobstore_s3: Option<String>,
    /// The sha256 of --blobstore-s3.
    #[arg(long, value_name = "HEX")]
    pub blobstore_s3_sha256: Option<String>,
    /// The Azure Storage blobstore CLI: PATH or URL (installed as bosh-blobstore-azure-storage).
    #[arg(long, value_name = "PATH|URL")]
    pub blobstore_azure_storage: Option<String>,
    /// The sha256 of --blobstore-azure-storage.
    #[arg(long, value_name = "HEX")]
    pub blobstore_azure_storage_sha256: Option<String>,
}

impl InputArgs {
    /// The inputs by name, as `build::BuildRequest::inputs` takes them.
    fn by_name(&self) -> Vec<(&'static str, Option<String>, Option<String>)> {
        vec![
            ("bosh-agent", self.agent.clone(), self.agent_sha256.clone()),
            (
                "bosh-blobstore-dav",
                self.blobstore_dav.clone(),
                self.blobstore_dav_sha256.clone(),
            ),
            (
                "bosh-blobstore-gcs",
                self.blobstore_gcs.clone(),
                self.blobstore_gcs_sha256.clone(),
            ),
            (
                "bosh-blobstore-s3",
                self.blobstore_s3.clone(),
                self.blobstore_s3_sha256.clone(),
            ),
            (
                "bosh-blobstore-azure-storage",
                self.blobstore_azure_storage.clone(),
                self.blobstore_azure_storage_sha256.clone(),
            ),
        ]
    }

    /// The OS to build: from --os-image's /etc/os-release (a contradicting --os is refused),
    /// else --os, else the default.
    fn os(&self, root: &std::path::Path) -> Result<String> {
        match &self.os_image {
            Some(tgz) => stemcell::rootfs::os_release::os_of_image(root, tgz, self.os.as_deref()),
            None => Ok(self
                .os
                .clone()
                .unwrap_or_else(|| stemcell::recipe::os::DEFAULT_OS.to_string())),
        }
    }
}

#[derive(Args, Debug)]
pub struct DiffArgs {
    /// The stemcell before (e.g. the last published one).
    pub a: PathBuf,
    /// The stemcell after (the candidate).
    pub b: PathBuf,
    /// Also compare the root filesystem's files (path, mode, owner, size, sha256), read from
    /// both disks without mounting (needs room in $TMPDIR for one expanded disk at a time).
    #[arg(long)]
    pub files: bool,
    /// Print one JSON document on stdout (field names in the README).
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum CacheCommand {
    /// What the work directory holds: layers per OS and stage, exports, kept disks, inputs,
    /// logs, with sizes and last use.
    List(CacheListArgs),
    /// Remove cached layers (and OS image exports, kept disks) a build does not need; never
    /// while a build uses the work directory.
    Prune(CachePruneArgs),
}

#[derive(Args, Debug)]
pub struct CacheListArgs {
    /// The work directory (`build --work-dir`).
    #[arg(long, default_value = "/var/cache/stemcell")]
    pub work_dir: PathBuf,
    /// Print one JSON document on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct CachePruneArgs {
    /// The work directory (`build --work-dir`).
    #[arg(long, default_value = "/var/cache/stemcell")]
    pub work_dir: PathBuf,
    /// Keep the N most recently used layers of each OS, stage and infrastructure.
    #[arg(long, value_name = "N")]
    pub keep_latest: Option<usize>,
    /// Remove only what was not used for more than DAYS days (with --keep-latest: both must hold).
    #[arg(long, value_name = "DAYS")]
    pub older_than: Option<f64>,
    /// Show what would be removed; remove nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Args, Debug)]
pub struct TestImageArgs {
    /// OS image tarball (.tgz or .tar), a directory holding a root filesystem, or a stemcell
    /// tarball (its OS image and stemcell checks, for its infrastructure).
    pub file: PathBuf,
    /// Print one JSON document on standard output instead of the PASS/FAIL lines.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct BuildArgs {
    /// Infrastructure to build for (repeatable; file names in infrastructures/, listed below).
    #[arg(long = "infrastructure", required = true)]
    pub infrastructures: Vec<String>,
    /// Stemcell version, e.g. 1.606 (written as a quoted string).
    #[arg(long)]
    pub version: String,
    #[command(flatten)]
    pub inputs: InputArgs,
    /// Leave out the blobstore CLIs that were not given (by default all four are installed,
    /// from the official releases pinned in assets/stemcell/agent-release.yaml). A stemcell
    /// without bosh-blobstore-dav cannot fetch packages from a default Director.
    #[arg(long)]
    pub no_blobstore_clis: bool,
    /// GRUB superuser (vcap) password; a random one per build when absent (printed at the end).
    /// Required with SOURCE_DATE_EPOCH, for reproducible disks.
    #[arg(long)]
    pub grub_password: Option<String>,
    /// Cache and work directory (layers, exports, inputs, logs; see `stemcell cache`).
    #[arg(long, default_value = "/var/cache/stemcell")]
    pub work_dir: PathBuf,
    /// Directory for the stemcell tarballs (created).
    #[arg(short = 'o', long = "output-dir")]
    pub output_dir: PathBuf,
    /// Overwrite existing tarballs.
    #[arg(long)]
    pub force: bool,
    /// Keep each infrastructure's raw disk as `<work-dir>/disks/<name>.raw` (removed after
    /// packing otherwise: it is as large as the root filesystem).
    #[arg(long)]
    pub keep_disks: bool,
    /// Print one JSON document on stdout (field names in the README); progress stays on stderr.
    #[arg(long)]
    pub json: bool,
}

/// Each command's examples, shown at the end of its `--help`.
const EXAMPLES: &[(&str, &str)] = &[
    ("convert", "stemcell convert --format qcow2 disk.raw out/root.qcow2\n  stemcell convert --format ova --firmware bios --name my-vm disk.raw out/my-vm.ova"),
    ("package", "stemcell package --infrastructure openstack --os debian-bookworm --version 0.0.1 --disk disk.raw --packages packages.txt -o out"),
    ("light", "stemcell light --from out/bosh-stemcell-0.0.1-aws-xen-hvm-debian-bookworm.tgz --ami us-east-1=ami-0123456789abcdef0 -o out\n  stemcell light --from out/bosh-stemcell-0.0.1-openstack-kvm-debian-bookworm.tgz --image-id 5c1a0f3e-7d5b-4c0e-9f5e-2a8d6c1b7e90 -o out"),
    ("inspect", "stemcell inspect out/bosh-stemcell-0.0.1-openstack-kvm-debian-bookworm.tgz\n  stemcell inspect --json out/bosh-stemcell-0.0.1-openstack-kvm-debian-bookworm.tgz | jq -r .tarball.sha256"),
    ("verify", "stemcell verify out/bosh-stemcell-0.0.1-openstack-kvm-debian-bookworm.tgz\n  stemcell verify --json out/bosh-stemcell-0.0.1-openstack-kvm-debian-bookworm.tgz | jq .warnings"),
    ("os-image", "stemcell os-image --os debian-bookworm -o out/debian-bookworm.tgz\n  stemcell os-image --os debian-bookworm --from-stage 40-sshd -o out/debian-bookworm.tgz --force"),
    ("plan", "stemcell plan --os debian-bookworm --infrastructure openstack\n  stemcell plan --os-image out/debian-bookworm.tgz --infrastructure vsphere --agent bosh-agent --agent-sha256 \"$(sha256sum bosh-agent | cut -d' ' -f1)\" --json"),
    ("test-image", "stemcell test-image out/debian-bookworm.tgz"),
    ("build", "stemcell build --os debian-bookworm --infrastructure openstack --infrastructure vsphere --version 0.0.1 --agent tests/fixtures/standin-agent/bosh-agent --agent-sha256 \"$(sha256sum tests/fixtures/standin-agent/bosh-agent | cut -d' ' -f1)\" -o out\n  stemcell build --os-image out/debian-bookworm.tgz --infrastructure aws --version 0.0.2 --agent https://example.org/bosh-agent --agent-sha256 HEX -o out --json"),
    ("diff", "stemcell diff published/bosh-stemcell-0.0.1-openstack-kvm-debian-bookworm.tgz out/bosh-stemcell-0.0.2-openstack-kvm-debian-bookworm.tgz\n  stemcell diff --files --json OLD.tgz NEW.tgz | jq '.packages.upgraded'"),
    ("cache list", "stemcell cache list\n  stemcell cache list --work-dir target/e2e/work --json"),
    ("cache prune", "stemcell cache prune --keep-latest 1\n  stemcell cache prune --older-than 14 --dry-run"),
    ("boot", "stemcell boot out/bosh-stemcell-0.0.1-openstack-kvm-debian-bookworm.tgz --ping --accel tcg\n  stemcell boot out/bosh-stemcell-0.0.1-vsphere-esxi-debian-bookworm.tgz --ping --json --serial-log vsphere.log"),
    ("boot-metadata", "stemcell boot-metadata SITE-DIR   (run by QEMU's guestfwd, one connection on stdin/stdout)"),
];

/// Commands whose help lists the valid infrastructure and OS names.
const WITH_NAMES: &[&str] = &["package", "os-image", "plan", "build"];

/// The clap command with each command's examples and, where it takes them, the valid
/// infrastructure and OS names read from the data directories (`infrastructures/*.yaml`,
/// `stages/os/*.yaml`) of the project root.
pub fn command() -> clap::Command {
    use clap::CommandFactory;
    use stemcell::recipe::{os, resolve};
    let root = resolve::project_root();
    let infras = resolve::infrastructure_names(&root)
        .ok()
        .flatten()
        .unwrap_or_default()
        .join(", ");
    let oses = os::names(&root).unwrap_or_default().join(", ");
    let names = format!(
        "Infrastructures (infrastructures/*.yaml): {infras}\nOperating systems (stages/os/*.yaml): {oses} (default {})\n\n",
        os::DEFAULT_OS
    );
    let mut cmd = Cli::command();
    for (path, examples) in EXAMPLES {
        let text = |name: &str| {
            let pre = if WITH_NAMES.contains(&name) {
                names.as_str()
            } else {
                ""
            };
            format!("{pre}Examples:\n  {examples}")
        };
        cmd = match path.split_once(' ') {
            Some((parent, child)) => {
                let t = text(path);
                cmd.mut_subcommand(parent, |c| c.mut_subcommand(child, |c| c.after_help(t)))
            }
            None => {
                let t = text(path);
                cmd.mut_subcommand(*path, |c| c.after_help(t))
            }
        };
    }
    cmd
}

pub fn run(cli: Cli) -> Result<()> {
    // The commands that write disk images show their bytes and rate while they do.
    if matches!(
        cli.command,
        Command::Convert(_) | Command::Package(_) | Command::Build(_)
    ) {
        stemcell::progress::show_bytes();
    }
    match cli.command {
        Command::Convert(a) => convert(a),
        Command::Package(a) => package(a),
        Command::Light(a) => light(a),
        Command::Inspect(a) => inspect(a),
        Command::Verify(a) => verify(a),
        Command::OsImage(a) => os_image(a),
        Command::Plan(a) => plan(a),
        Command::TestImage(a) => test_image(a),
        Command::Build(a) => build(a),
        Command::Diff(a) => diff(a),
        Command::Cache(CacheCommand::List(a)) => cache_list(a),
        Command::Cache(CacheCommand::Prune(a)) => cache_prune(a),
        Command::Boot(a) => boot(a),
        Command::BootMetadata(a) => boot_metadata(a),
    }
}

fn convert(a: ConvertArgs) -> Result<()> {
    use stemcell::formats::{self, Firmware, Format, OvfOptions, Qcow2Compat};
    let format = match a.format {
        FormatName::Qcow2 => Format::Qcow2 {
            compat: match a.compat.as_str() {
                "0.10" => Qcow2Compat::V2,
                "1.1" => Qcow2Compat::V3,
                other => bail!("--compat {other}: expected 0.10 or 1.1"),
            },
            compressed: !a.no_compress,
        },
        FormatName::Vhd => Format::VhdDynamic,
        FormatName::VhdFixed => Format::VhdFixed,
        FormatName::Vmdk => Format::Vmdk,
        FormatName::Ova => Format::Ova(OvfOptions {
            name: a.name,
            firmware: if a.firmware == "bios" {
                Firmware::Bios
            } else {
                Firmware::Efi
            },
            cpus: 1,
            memory_mib: 512,
        }),
        FormatName::Raw => Format::Raw,
    };
    create_parent(&a.out)?;
    formats::convert(&a.raw, &a.out, &format, a.force)
}

fn package(a: PackageArgs) -> Result<()> {
    use anyhow::Context;
    use stemcell::formats::{Firmware, OvfOptions};
    use stemcell::recipe::infrastructure;
    use stemcell::stemcell::image::ImageKind;
    use stemcell::stemcell::pack::{pack, ImageSource};
    let infra = infrastructure::load(&infrastructure::default_root(), &a.infrastructure)?;
    // The OS becomes the manifest's operating_system and the tarball's name: a typo would make
    // a stemcell no deployment asks for.
    stemcell::recipe::os::load(&infrastructure::default_root(), &a.os)?;
    if infra.outputs.iter().any(|o| o.image == ImageKind::FilesTar) {
        bail!(
            "{}: the {} image is a tar of the root filesystem and cannot be made from a raw disk; use `stemcell build`",
            a.disk.display(),
            infra.name
        );
    }
    let read = |p: &Option<PathBuf>| -> Result<Vec<u8>> {
        match p {
            Some(p) => std::fs::read(p).with_context(|| format!("{}: cannot read", p.display())),
            None => Ok(Vec::new()),
        }
    };
    let (packages, dev_tools) = (read(&a.packages)?, read(&a.dev_tools)?);
    // The version and the disk are checked before the output directory is made: a bad input
    // leaves nothing.
    stemcell::stemcell::naming::check_name_chars("version", &a.version)?;
    stemcell::formats::source::RawDisk::open(&a.disk)?;
    // The architecture names the stemcell and its cloud_properties: it must be the disk's.
    if let Some(arch) = stemcell::stemcell::filelist::disk_arch(&a.disk) {
        if arch != a.arch {
            bail!(
                "{}: an {arch} disk (its /usr/bin/dash), packed as --arch {}",
                a.disk.display(),
                a.arch
            );
        }
    }
    let firmware = if a.firmware == "bios" {
        Firmware::Bios
    } else {
        Firmware::Efi
    };
    use stemcell::stemcell::spec::InfrastructureStemcells;
    let specs = infra.pack_specs(
        &a.os,
        a.arch,
        &a.version,
        &packages,
        &dev_tools,
        &OvfOptions {
            name: format!("{}-{}", infra.name, a.os),
            firmware,
            cpus: 1,
            memory_mib: 512,
        },
        a.force,
    )?;
    let specs: Vec<_> = specs
        .into_iter()
        .filter(|s| {
            a.disk_formats.is_empty()
                || a.disk_formats
                    .contains(&s.manifest.cloud_properties.disk_format)
        })
        .collect();
    if specs.is_empty() {
        let known: Vec<&str> = infra
            .outputs
            .iter()
            .map(|o| o.disk_format.as_str())
            .collect();
        bail!(
            "--disk-format {}: {} has outputs {}",
            a.disk_formats.join(","),
            infra.name,
            known.join(", ")
        );
    }
    std::fs::create_dir_all(&a.output_dir).with_context(|| {
        format!(
            "{}: cannot create the output directory",
            a.output_dir.display()
        )
    })?;
    let mut written: Vec<PathBuf> = Vec::new();
    for spec in &specs {
        match pack(spec, ImageSource::Disk(&a.disk), &a.output_dir) {
            Ok(p) => {
                println!(
                    "{}  {} bytes  sha1 {}",
                    p.tarball.path.display(),
                    p.tarball.size,
                    p.tarball.sha1
                );
                written.push(p.tarball.path);
            }
            Err(e) => {
                // All outputs or none: remove the tarballs this run already wrote.
                for w in &written {
                    let _ = std::fs::remove_file(w);
                }
                return Err(e);
            }
        }
    }
    Ok(())
}

fn light(a: LightArgs) -> Result<()> {
    use stemcell::stemcell::light::{make_light, parse_amis, LightTarget};
    let given = [
        !a.amis.is_empty(),
        a.image_url.is_some(),
        a.image_id.is_some(),
    ];
    if given.iter().filter(|g| **g).count() != 1 {
        bail!("light: give exactly one of --ami REGION=ID (aws), --image-url URL (google), --image-id ID (openstack)");
    }
    let target = if !a.amis.is_empty() {
        LightTarget::Aws(parse_amis(&a.amis)?)
    } else if let Some(url) = a.image_url {
        LightTarget::Google(url)
    } else {
        LightTarget::Openstack(a.image_id.unwrap_or_default())
    };
    let w = make_light(&a.from, &target, &a.output_dir, a.force)?;
    println!("{}  {} bytes  sha1 {}", w.path.display(), w.size, w.sha1);
    Ok(())
}

fn inspect(a: InspectArgs) -> Result<()> {
    use stemcell::stemcell::inspect::{inspect_data, render};
    let data = inspect_data(&a.file)?;
    if a.json {
        print_json(&data)
    } else {
        print!("{}", render(&data)?);
        Ok(())
    }
}

fn verify(a: InspectArgs) -> Result<()> {
    let found = stemcell::stemcell::verify::verify(&a.file)?;
    let file = a.file.display();
    if a.json {
        print_json(&serde_json::json!({
            "file": file.to_string(),
            "ok": found.is_ok(),
            "errors": found.errors,
            "warnings": found.warnings,
        }))?;
    } else {
        for w in &found.warnings {
            eprintln!("{file}: warning: {w}");
        }
        for e in &found.errors {
            eprintln!("{file}: error: {e}");
        }
        if found.is_ok() {
            println!("{file}: OK");
        }
    }
    if !found.is_ok() {
        // Exit status from errors only; warnings never fail.
        bail!(
            "{file}: {} error(s), {} warning(s)",
            found.errors.len(),
            found.warnings.len()
        );
    }
    Ok(())
}

fn os_image(a: OsImageArgs) -> Result<()> {
    use stemcell::output::check_dir_can_be_made;
    use stemcell::recipe::resolve::{project_root, resolve, PlanOptions};
    use stemcell::recipe::stage::Phase;
    use stemcell::rootfs::{export, interrupt};
    use stemcell::stage::runner::{self, RunOptions};
    let root = project_root();
    let options = PlanOptions {
        os: a.os.clone(),
        arch: a.arch,
        mirror: a.mirror.clone(),
        build_time: std::env::var("BUILD_TIME").ok().filter(|t| !t.is_empty()),
        source_date_epoch: stemcell::disk::layout::source_date_epoch_from_env()?,
        ..Default::default()
    };
    let plan = resolve(&root, &options)?;
    interrupt::install();
    export::remove_stale_outputs(&a.output);
    let side = |suffix: &str| export::side_file(&a.output, suffix);
    for p in [
        a.output.clone(),
        side("packages.txt"),
        side("dev_tools_file_list.txt"),
    ] {
        if !a.force && p.symlink_metadata().is_ok() {
            bail!("{}: output exists (use --force to overwrite)", p.display());
        }
    }
    // The output's directory is judged now, as the runner judges the work directory: it is
    // only made after every stage has run.
    if let Some(dir) = a.output.parent().filter(|p| !p.as_os_str().is_empty()) {
        check_dir_can_be_made(dir, "output directory")?;
    }
    let options = RunOptions {
        work_dir: absolute(&a.work_dir)?,
        from_stage: a.from_stage.clone(),
        phase: Some(Phase::OsImage),
        quiet: false,
        binds: Vec::new(),
    };
    let built = runner::run(&plan, &options)?;
    create_parent(&a.output)?;
    export::write_os_image(
        &built.store,
        &built.layers,
        plan.source_date_epoch,
        &a.output,
        a.force,
    )?;
    eprint!("{}", built.report());
    eprintln!("{}", a.output.display());
    Ok(())
}

fn parse_arch(name: &str) -> Result<Arch> {
    Arch::parse(name)
}

fn plan(a: PlanArgs) -> Result<()> {
    use stemcell::planning::{plan, PlanRequest};
    use stemcell::recipe::plan::short_key;
    let root = stemcell::recipe::resolve::project_root();
    let report = plan(&PlanRequest {
        os: a.inputs.os(&root)?,
        arch: a.inputs.arch,
        root,
        os_image: a.inputs.os_image.clone(),
        mirror: a.inputs.mirror.clone(),
        infrastructures: a.infrastructures.clone(),
        version: a.version.clone(),
        inputs: a.inputs.by_name(),
        extra_vars: a
            .vars
            .iter()
            .map(|v| match v.split_once('=') {
                Some((name, value)) => Ok((name.to_string(), value.to_string())),
                None => bail!("--var {v}: expected NAME=VALUE"),
            })
            .collect::<Result<_>>()?,
        work_dir: a.work_dir.clone(),
    })?;
    if a.json {
        return print_json(&report);
    }
    println!(
        "os: {}  arch: {}  mirror: {}",
        report.os, report.arch, report.mirror
    );
    let row = |phase: &str, name: &str, key: &str, status: &str, description: &str| {
        println!("{phase:<9} {name:<30} {key:<12} {status:<13} {description}");
    };
    for p in &report.plans {
        if let Some(i) = &p.infrastructure {
            println!("infrastructure: {i}");
        }
        row("PHASE", "STAGE", "KEY", "STATUS", "DESCRIPTION");
        for r in &p.stages {
            row(
                &r.phase,
                &r.name,
                r.key.as_deref().map(short_key).unwrap_or("?"),
                &r.status,
                &r.description,
            );
        }
    }
    Ok(())
}

fn test_image(a: TestImageArgs) -> Result<()> {
    let root = stemcell::recipe::resolve::project_root();
    let scratch = stemcell::imagetest::scratch_dir();
    stemcell::imagetest::test_image_in(&a.file, &root, &scratch, a.json).map(|_| ())
}

fn build(a: BuildArgs) -> Result<()> {
    use stemcell::build::{build, report, BuildRequest};
    let started = std::time::Instant::now();
    let root = stemcell::recipe::resolve::project_root();
    let os = a.inputs.os(&root)?;
    let outcome = build(&BuildRequest {
        root,
        infrastructures: a.infrastructures,
        version: a.version,
        os,
        arch: a.inputs.arch,
        os_image: a.inputs.os_image.clone(),
        mirror: a.inputs.mirror.clone(),
        inputs: a.inputs.by_name(),
        no_blobstore_clis: a.no_blobstore_clis,
        grub_password: a.grub_password,
        // Absolute: it is bound and mounted from inside namespaces with other working directories.
        work_dir: absolute(&a.work_dir)?,
        output_dir: a.output_dir,
        force: a.force,
        keep_disks: a.keep_disks,
    })?;
    eprint!("{}", report(&outcome.timings));
    eprintln!("  wall clock  {:.1}s", started.elapsed().as_secs_f64());
    let mut stemcells = Vec::new();
    for b in &outcome.stemcells {
        for p in &b.packed {
            if a.json {
                stemcells.push(serde_json::json!({
                    "infrastructure": b.infrastructure,
                    "path": p.tarball.path.display().to_string(),
                    "name": p.manifest.name,
                    "version": p.manifest.version,
                    "disk_format": p.manifest.cloud_properties.disk_format,
                    "size": p.tarball.size,
                    "sha1": p.tarball.sha1,
                    "sha256": sha256_file(&p.tarball.path)?,
                }));
            } else {
                println!(
                    "{}  {} bytes  sha1 {}",
                    p.tarball.path.display(),
                    p.tarball.size,
                    p.tarball.sha1
                );
            }
        }
        if let Some(pw) = &b.grub_password {
            eprintln!("{}: GRUB password for vcap: {pw}", b.infrastructure);
        }
    }
    if a.json {
        let timings: Vec<_> = outcome
            .timings
            .iter()
            .map(|t| serde_json::json!({"name": t.name, "cached": t.cached, "seconds": t.duration.as_secs_f64()}))
            .collect();
        let passwords: serde_json::Map<String, serde_json::Value> = outcome
            .stemcells
            .iter()
            .filter_map(|b| Some((b.infrastructure.clone(), b.grub_password.clone()?.into())))
            .collect();
        print_json(&serde_json::json!({
            "stemcells": stemcells,
            "grub_passwords": passwords,
            "timings": timings,
            "seconds": started.elapsed().as_secs_f64(),
        }))?;
    }
    Ok(())
}

fn diff(a: DiffArgs) -> Result<()> {
    use stemcell::stemcell::diff::{diff, render};
    let d = diff(&a.a, &a.b, a.files)?;
    if a.json {
        print_json(&d)
    } else {
        print!("{}", render(&d));
        Ok(())
    }
}

fn cache_list(a: CacheListArgs) -> Result<()> {
    use stemcell::rootfs::cache::{human_age, human_size, list};
    let l = list(&a.work_dir)?;
    if a.json {
        return print_json(&l);
    }
    println!(
        "work directory: {}  total {}",
        l.work_dir.display(),
        human_size(l.total_bytes)
    );
    println!(
        "{:<16} {:<10} {:<30} {:<11} {:<12} {:>9} {:>9}",
        "OS", "PHASE", "STAGE", "INFRA", "KEY", "SIZE", "LAST USE"
    );
    for x in &l.layers {
        let r = x
            .record
            .clone()
            .unwrap_or_else(|| stemcell::rootfs::cache::LayerRecord {
                os: "?".into(),
                phase: "?".into(),
                stage: "(no record)".into(),
                ..Default::default()
            });
        let stage = if x.complete {
            r.stage
        } else {
            format!("{} (incomplete)", r.stage)
        };
        println!(
            "{:<16} {:<10} {:<30} {:<11} {:<12} {:>9} {:>9}",
            r.os,
            r.phase,
            stage,
            r.infrastructure.as_deref().unwrap_or("-"),
            stemcell::recipe::plan::short_key(&x.key),
            human_size(x.bytes),
            human_age(x.age_seconds)
        );
    }
    for f in &l.files {
        println!(
            "{:<16} {:>9} {:>9}  {}",
            f.kind,
            human_size(f.bytes),
            human_age(f.age_seconds),
            f.path.display()
        );
    }
    Ok(())
}

fn cache_prune(a: CachePruneArgs) -> Result<()> {
    use stemcell::rootfs::cache::{human_size, prune, PruneOptions};
    if a.older_than.is_some_and(|d| d.is_nan() || d < 0.0) {
        bail!(
            "--older-than {}: expected a number of days, 0 or more",
            a.older_than.unwrap_or_default()
        );
    }
    let p = prune(
        &a.work_dir,
        &PruneOptions {
            keep_latest: a.keep_latest,
            older_than: a
                .older_than
                .map(|d| std::time::Duration::from_secs_f64(d * 86_400.0)),
            dry_run: a.dry_run,
        },
    )?;
    let verb = if a.dry_run { "would remove" } else { "removed" };
    for k in &p.layers {
        println!("{verb} layer {k}");
    }
    for f in &p.files {
        println!("{verb} {}", f.display());
    }
    println!(
        "{verb} {} layer(s), {} file(s), {}",
        p.layers.len(),
        p.files.len(),
        human_size(p.bytes)
    );
    Ok(())
}

/// One JSON document on stdout (a closed pipe, `| head`, is not an error).
fn print_json<T: serde::Serialize>(v: &T) -> Result<()> {
    use std::io::Write;
    let text = serde_json::to_string_pretty(v)?;
    match writeln!(std::io::stdout(), "{text}") {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

fn absolute(p: &std::path::Path) -> Result<PathBuf> {
    std::path::absolute(p).with_context(|| format!("{}: cannot resolve", p.display()))
}

/// Creates the directory an output file goes into.
fn create_parent(out: &std::path::Path) -> Result<()> {
    match out.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(dir) => std::fs::create_dir_all(dir)
            .with_context(|| format!("{}: cannot create the output directory", dir.display())),
        None => Ok(()),
    }
}

fn sha256_file(p: &std::path::Path) -> Result<String> {
    use sha2::Digest;
    let mut f = std::fs::File::open(p).with_context(|| format!("{}: cannot open", p.display()))?;
    let mut h = sha2::Sha256::new();
    std::io::copy(&mut f, &mut h).with_context(|| format!("{}: cannot read", p.display()))?;
    Ok(hex::encode(h.finalize()))
}

// ---- stemcell boot ----

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootFirmware {
    Bios,
    Uefi,
}

#[derive(Args, Debug)]
pub struct BootArgs {
    /// A heavy stemcell tarball.
    pub stemcell: PathBuf,
    /// Firmware (default: what the stemcell asks for; UEFI for vSphere).
    #[arg(long, value_enum)]
    pub firmware: Option<BootFirmware>,
    /// Guest memory.
    #[arg(long, default_value_t = 2048, value_name = "MiB", value_parser = clap::value_parser!(u32).range(256..))]
    pub mem: u32,
    /// Guest CPUs.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=255))]
    pub smp: u32,
    /// How much larger than the image the root disk is.
    #[arg(long, default_value_t = 4, value_name = "GiB")]
    pub disk_grow: u64,
    /// Attach an ephemeral disk of this size (vSphere always gets one: 4 GiB by default).
    #[arg(long, value_name = "GiB")]
    pub ephemeral_disk: Option<u64>,
    /// Seconds before giving up on the agent (or, without --ping, before stopping the VM).
    #[arg(long, default_value_t = 900, value_name = "S", value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout: u64,
    /// Wait for the agent to answer ping (then get_state) over its HTTPS message bus.
    #[arg(long)]
    pub ping: bool,
    /// Keep the VM running after pong, until Ctrl-C.
    #[arg(long)]
    pub keep: bool,
    /// Print the outcome as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// QEMU accelerator: kvm, tcg, or auto (KVM when /dev/kvm opens).
    #[arg(long, default_value = "auto")]
    pub accel: String,
    /// Host port (127.0.0.1) forwarded to the agent's mbus port 6868; default any free one.
    #[arg(long, default_value_t = 0)]
    pub mbus_port: u16,
    /// Host port (127.0.0.1) forwarded to the guest's SSH; default any free one.
    #[arg(long, default_value_t = 0)]
    pub ssh_port: u16,
    /// Write the serial console here (default: inside the temporary directory, removed).
    #[arg(long)]
    pub serial_log: Option<PathBuf>,
    /// Where the temporary directory (the disk, its overlay, the media) goes.
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct BootMetadataArgs {
    /// The directory of metadata answers `stemcell boot` wrote for this VM.
    pub site: PathBuf,
}

fn boot(a: BootArgs) -> Result<()> {
    use stemcell::output::check_dir_can_be_made;
    // Judged before the disk is read: QEMU would only fail on them after it.
    if let Some(dir) = &a.work_dir {
        check_dir_can_be_made(dir, "work directory")?;
    }
    if let Some(log) = &a.serial_log {
        if let Some(dir) = log.parent().filter(|p| !p.as_os_str().is_empty()) {
            check_dir_can_be_made(dir, "serial log's directory")?;
        }
        create_parent(log)?;
    }
    stemcell::rootfs::interrupt::install();
    let exe = std::env::current_exe().context("cannot find the stemcell binary")?;
    let outcome = stemcell::boot::boot(&stemcell::boot::BootOptions {
        stemcell: a.stemcell,
        firmware: a.firmware.map(|f| match f {
            BootFirmware::Bios => stemcell::boot::target::Firmware::Bios,
            BootFirmware::Uefi => stemcell::boot::target::Firmware::Uefi,
        }),
        memory_mib: a.mem,
        cpus: a.smp,
        disk_grow_gib: a.disk_grow,
        ephemeral_gib: a.ephemeral_disk,
        timeout: std::time::Duration::from_secs(a.timeout),
        ping: a.ping,
        keep: a.keep,
        accel: a.accel,
        mbus_port: a.mbus_port,
        ssh_port: a.ssh_port,
        serial_log: a.serial_log,
        work_dir: a.work_dir,
        metadata_command: vec![exe.display().to_string(), "boot-metadata".into()],
    })?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&outcome)?);
    } else if let Some(s) = outcome.seconds_to_pong {
        println!(
            "{}: pong after {s:.1}s; job_state: {}",
            outcome.stemcell,
            outcome.job_state.as_deref().unwrap_or("?")
        );
    }
    Ok(())
}

fn boot_metadata(a: BootMetadataArgs) -> Result<()> {
    // A stuck connection must not outlive its VM.
    // SAFETY: alarm only schedules SIGALRM, whose default action ends this process.
    unsafe { libc::alarm(60) };
    stemcell::boot::metadata::serve_one(
        &a.site,
        &mut std::io::stdin().lock(),
        &mut std::io::stdout().lock(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every command has examples and every flag and argument a help line.
    #[test]
    fn every_command_and_flag_is_explained() {
        let cmd = command();
        let mut todo: Vec<(String, &clap::Command)> = cmd
            .get_subcommands()
            .map(|c| (c.get_name().to_string(), c))
            .collect();
        let mut seen = 0;
        while let Some((path, c)) = todo.pop() {
            if c.has_subcommands() {
                todo.extend(
                    c.get_subcommands()
                        .map(|s| (format!("{path} {}", s.get_name()), s)),
                );
                continue;
            }
            seen += 1;
            let after = c
                .get_after_help()
                .map(|h| h.to_string())
                .unwrap_or_default();
            assert!(
                after.contains("Examples:\n  stemcell "),
                "{path}: no examples"
            );
            for a in c
                .get_arguments()
                .filter(|a| !["help", "version"].contains(&a.get_id().as_str()))
            {
                assert!(
                    a.get_help().is_some(),
                    "{path}: --{} has no help text",
                    a.get_id()
                );
            }
        }
        assert_eq!(seen, EXAMPLES.len(), "an example per command");
    }
}
