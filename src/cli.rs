//! Command line: clap definitions and one small function per command that calls the library.
//! No logic lives here.

use anyhow::{bail, Context, Result};
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
    /// Only the outputs with this `cloud_properties.disk_format` (repeatable; default: every
    /// output of the infrastructure, e.g. openstack's qcow2 and raw tarballs).
    #[arg(long = "disk-format", value_name = "FORMAT")]
    pub disk_formats: Vec<String>,
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
    /// Stemcell version (stemcell phase).
    #[arg(long)]
    pub version: Option<String>,
    /// A template variable, e.g. `passwords.vcap=$6$...` or `agent_sha256=...`; repeatable.
    #[arg(long = "var", value_name = "NAME=VALUE")]
    pub vars: Vec<String>,
    #[arg(long, default_value = "/var/cache/stemcell")]
    pub work_dir: PathBuf,
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
    /// The davcli blobstore CLI: PATH or URL (installed as /var/vcap/bosh/bin/bosh-blobstore-dav).
    #[arg(long, value_name = "PATH|URL")]
    pub blobstore_dav: Option<String>,
    #[arg(long, value_name = "HEX")]
    pub blobstore_dav_sha256: Option<String>,
    /// The GCS blobstore CLI: PATH or URL.
    #[arg(long, value_name = "PATH|URL")]
    pub blobstore_gcs: Option<String>,
    #[arg(long, value_name = "HEX")]
    pub blobstore_gcs_sha256: Option<String>,
    /// The S3 blobstore CLI: PATH or URL.
    #[arg(long, value_name = "PATH|URL")]
    pub blobstore_s3: Option<String>,
    #[arg(long, value_name = "HEX")]
    pub blobstore_s3_sha256: Option<String>,
    /// The Azure Storage blobstore CLI: PATH or URL.
    #[arg(long, value_name = "PATH|URL")]
    pub blobstore_azure_storage: Option<String>,
    #[arg(long, value_name = "HEX")]
    pub blobstore_azure_storage_sha256: Option<String>,
    /// Leave out the blobstore CLIs that were not given (by default all four are installed,
    /// from the official releases pinned in assets/stemcell/agent-release.yaml). A stemcell
    /// without bosh-blobstore-dav cannot fetch packages from a default Director.
    #[arg(long)]
    pub no_blobstore_clis: bool,
    /// GRUB superuser (vcap) password; a random one per build when absent (printed at the end).
    /// Required with SOURCE_DATE_EPOCH, for reproducible disks.
    #[arg(long)]
    pub grub_password: Option<String>,
    #[arg(long, default_value = "/var/cache/stemcell")]
    pub work_dir: PathBuf,
    #[arg(short = 'o', long = "output-dir")]
    pub output_dir: PathBuf,
    #[arg(long)]
    pub force: bool,
    /// Keep each infrastructure's raw disk as `<work-dir>/disks/<name>.raw` (removed after
    /// packing otherwise: it is as large as the root filesystem).
    #[arg(long)]
    pub keep_disks: bool,
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

fn package(a: PackageArgs) -> Result<()> {
    use anyhow::Context;
    use stemcell::formats::{Firmware, OvfOptions};
    use stemcell::recipe::infrastructure;
    use stemcell::stemcell::image::ImageKind;
    use stemcell::stemcell::pack::{pack, ImageSource};
    let infra = infrastructure::load(&infrastructure::default_root(), &a.infrastructure)?;
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
    std::fs::create_dir_all(&a.output_dir)
        .with_context(|| format!("{}: cannot create the output directory", a.output_dir.display()))?;
    let firmware = if a.firmware == "bios" { Firmware::Bios } else { Firmware::Efi };
    use stemcell::stemcell::spec::InfrastructureStemcells;
    let specs = infra.pack_specs(&a.os, &a.version, &packages, &dev_tools, &OvfOptions {
        name: format!("{}-{}", infra.name, a.os),
        firmware,
        cpus: 1,
        memory_mib: 512,
    }, a.force);
    let specs: Vec<_> = specs
        .into_iter()
        .filter(|s| a.disk_formats.is_empty() || a.disk_formats.contains(&s.manifest.cloud_properties.disk_format))
        .collect();
    if specs.is_empty() {
        let known: Vec<&str> = infra.outputs.iter().map(|o| o.disk_format.as_str()).collect();
        bail!("--disk-format {}: {} has outputs {}", a.disk_formats.join(","), infra.name, known.join(", "));
    }
    let mut written: Vec<PathBuf> = Vec::new();
    for spec in &specs {
        match pack(spec, ImageSource::Disk(&a.disk), &a.output_dir) {
            Ok(p) => {
                println!("{}  {} bytes  sha1 {}", p.tarball.path.display(), p.tarball.size, p.tarball.sha1);
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
    let given = [!a.amis.is_empty(), a.image_url.is_some(), a.image_id.is_some()];
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
    std::fs::create_dir_all(&a.output_dir)
        .with_context(|| format!("{}: cannot create the output directory", a.output_dir.display()))?;
    let w = make_light(&a.from, &target, &a.output_dir, a.force)?;
    println!("{}  {} bytes  sha1 {}", w.path.display(), w.size, w.sha1);
    Ok(())
}

fn inspect(a: InspectArgs) -> Result<()> {
    print!("{}", stemcell::stemcell::inspect::inspect(&a.file)?);
    Ok(())
}

fn verify(a: InspectArgs) -> Result<()> {
    let problems = stemcell::stemcell::verify::verify(&a.file)?;
    if problems.is_empty() {
        println!("{}: OK", a.file.display());
        return Ok(());
    }
    for p in &problems {
        eprintln!("{}: {p}", a.file.display());
    }
    bail!("{}: {} problem(s) found", a.file.display(), problems.len())
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
        binds: Vec::new(),
    };
    let built = runner::run(&plan, &options)?;
    export::write_os_image(&built.store, &built.layers, &a.output, a.force)?;
    eprint!("{}", built.report());
    eprintln!("{}", a.output.display());
    Ok(())
}

fn plan(a: PlanArgs) -> Result<()> {
    use stemcell::recipe::plan::{layer_done_marker, short_key};
    use stemcell::recipe::resolve::{build_time_setting, project_root, resolve, PlanOptions};
    let root = project_root();
    let options = PlanOptions {
        os: a.os,
        infrastructure: a.infrastructure,
        mirror: a.mirror,
        build_time: build_time_setting(&root)?,
        stemcell_version: a.version,
        extra_vars: a
            .vars
            .iter()
            .map(|v| match v.split_once('=') {
                Some((name, value)) => Ok((name.to_string(), value.to_string())),
                None => bail!("--var {v}: expected NAME=VALUE"),
            })
            .collect::<Result<_>>()?,
    };
    let plan = resolve(&root, &options)?;
    let row = |phase: &str, name: &str, key: &str, status: &str, description: &str| {
        println!("{phase:<9} {name:<30} {key:<12} {status:<7} {description}");
    };
    let status = |key: &str| match layer_done_marker(&a.work_dir, key).exists() {
        true => "cached",
        false => "to run",
    };
    println!("os: {}  mirror: {}", plan.os.name, plan.mirror);
    row("PHASE", "STAGE", "KEY", "STATUS", "DESCRIPTION");
    let key = &plan.bootstrap_key;
    let what = format!("{} {}", plan.os.family, plan.os.suite);
    row("bootstrap", "bootstrap", short_key(key), status(key), &what);
    for s in &plan.stages {
        let phase = s.phase.to_string();
        row(&phase, &s.name, short_key(&s.key), status(&s.key), &s.description);
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
    let outcome = build(&BuildRequest {
        root: stemcell::recipe::resolve::project_root(),
        infrastructures: a.infrastructures,
        version: a.version,
        os: a.os,
        os_image: a.os_image,
        mirror: a.mirror,
        inputs: vec![
            ("bosh-agent", a.agent, a.agent_sha256),
            ("bosh-blobstore-dav", a.blobstore_dav, a.blobstore_dav_sha256),
            ("bosh-blobstore-gcs", a.blobstore_gcs, a.blobstore_gcs_sha256),
            ("bosh-blobstore-s3", a.blobstore_s3, a.blobstore_s3_sha256),
            ("bosh-blobstore-azure-storage", a.blobstore_azure_storage, a.blobstore_azure_storage_sha256),
        ],
        no_blobstore_clis: a.no_blobstore_clis,
        grub_password: a.grub_password,
        work_dir: a.work_dir,
        output_dir: a.output_dir,
        force: a.force,
        keep_disks: a.keep_disks,
    })?;
    eprint!("{}", report(&outcome.timings));
    eprintln!("  wall clock  {:.1}s", started.elapsed().as_secs_f64());
    for b in &outcome.stemcells {
        for p in &b.packed {
            println!("{}  {} bytes  sha1 {}", p.tarball.path.display(), p.tarball.size, p.tarball.sha1);
        }
        if let Some(pw) = &b.grub_password {
            eprintln!("{}: GRUB password for vcap: {pw}", b.infrastructure);
        }
    }
    Ok(())
}
