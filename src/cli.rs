//! Command line: clap definitions and one small function per command that calls the library.
//! No logic lives here.

use anyhow::{bail, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(name = "stemcell", version, about = "Build, convert, package and check BOSH stemcells")]
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
    /// File to write.
    pub out: PathBuf,
}

#[derive(Args, Debug)]
pub struct PackageArgs {
    #[arg(long)]
    pub infrastructure: String,
    /// Operating system name, e.g. ubuntu-noble.
    #[arg(long)]
    pub os: String,
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
    /// The disk's firmware, for the OVF (vsphere).
    #[arg(long, default_value = "efi", value_parser = ["efi", "bios"])]
    pub firmware: String,
    #[arg(short = 'o', long = "output-dir")]
    pub output_dir: PathBuf,
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
    #[arg(short = 'o', long = "output-dir", default_value = ".")]
    pub output_dir: PathBuf,
    #[arg(long)]
    pub force: bool,
}

#[derive(Args, Debug)]
pub struct InspectArgs {
    pub file: PathBuf,
}

#[derive(Args, Debug)]
pub struct OsImageArgs {
    #[arg(long, default_value = "ubuntu-noble")]
    pub os: String,
    #[arg(long)]
    pub mirror: Option<String>,
    /// Restart from this stage, ignoring the cache for it and every stage after it.
    #[arg(long)]
    pub from_stage: Option<String>,
    /// Cache and work directory.
    #[arg(long, default_value = "/var/cache/stemcell")]
    pub work_dir: PathBuf,
    #[arg(short = 'o', long = "output")]
    pub output: PathBuf,
    #[arg(long)]
    pub force: bool,
}

#[derive(Args, Debug)]
pub struct PlanArgs {
    #[arg(long, default_value = "ubuntu-noble")]
    pub os: String,
    #[arg(long)]
    pub infrastructure: Option<String>,
    #[arg(long)]
    pub mirror: Option<String>,
    #[arg(long, default_value = "/var/cache/stemcell")]
    pub work_dir: PathBuf,
}

#[derive(Args, Debug)]
pub struct TestImageArgs {
    /// OS image tarball or stemcell.
    pub file: PathBuf,
}

#[derive(Args, Debug)]
pub struct BuildArgs {
    #[arg(long = "infrastructure", required = true)]
    pub infrastructures: Vec<String>,
    #[arg(long)]
    pub version: String,
    #[arg(long, default_value = "ubuntu-noble")]
    pub os: String,
    #[arg(long)]
    pub os_image: Option<PathBuf>,
    #[arg(long)]
    pub mirror: Option<String>,
    /// Agent binary: PATH or URL.
    #[arg(long)]
    pub agent: Option<String>,
    #[arg(long)]
    pub agent_sha256: Option<String>,
    #[arg(long, default_value = "/var/cache/stemcell")]
    pub work_dir: PathBuf,
    #[arg(short = 'o', long = "output-dir")]
    pub output_dir: PathBuf,
    #[arg(long)]
    pub force: bool,
}

pub fn run(cli: Cli) -> Result<()> {
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
            firmware: if a.firmware == "bios" { Firmware::Bios } else { Firmware::Efi },
            cpus: 1,
            memory_mib: 512,
        }),
        FormatName::Raw => Format::Raw,
    };
    formats::convert(&a.raw, &a.out, &format, a.force)
}

fn package(_a: PackageArgs) -> Result<()> {
    bail!("package: not implemented yet")
}

fn light(_a: LightArgs) -> Result<()> {
    bail!("light: not implemented yet")
}

fn inspect(_a: InspectArgs) -> Result<()> {
    bail!("inspect: not implemented yet")
}

fn verify(_a: InspectArgs) -> Result<()> {
    bail!("verify: not implemented yet")
}

fn os_image(a: OsImageArgs) -> Result<()> {
    use stemcell::recipe::resolve::{project_root, resolve, PlanOptions};
    use stemcell::recipe::stage::Phase;
    use stemcell::rootfs::{export, interrupt};
    use stemcell::stage::runner::{self, RunOptions};
    let root = project_root();
    let options = PlanOptions {
        os: a.os.clone(),
        mirror: a.mirror.clone(),
        build_time: std::env::var("BUILD_TIME").ok().filter(|t| !t.is_empty()),
        ..Default::default()
    };
    let plan = resolve(&root, &options)?;
    interrupt::install();
    export::remove_stale_outputs(&a.output);
    let side = |suffix: &str| export::side_file(&a.output, suffix);
    for p in [a.output.clone(), side("packages.txt"), side("dev_tools_file_list.txt")] {
        if !a.force && p.symlink_metadata().is_ok() {
            bail!("{}: output exists (use --force to overwrite)", p.display());
        }
    }
    let options = RunOptions {
        work_dir: a.work_dir.clone(),
        from_stage: a.from_stage.clone(),
        phase: Some(Phase::OsImage),
        quiet: false,
    };
    let built = runner::run(&plan, &options)?;
    export::write_os_image(&built.store, &built.layers, &a.output, a.force)?;
    eprint!("{}", built.report());
    eprintln!("{}", a.output.display());
    Ok(())
}

fn plan(_a: PlanArgs) -> Result<()> {
    bail!("plan: not implemented yet")
}

fn test_image(_a: TestImageArgs) -> Result<()> {
    bail!("test-image: not implemented yet")
}

fn build(_a: BuildArgs) -> Result<()> {
    bail!("build: not implemented yet")
}
