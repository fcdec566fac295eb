//! `stemcell build`: the whole product pipeline, and the one place that drives every stage of
//! it in order: resolve plans (recipe) → run the stages on cached layers (stage, rootfs) →
//! mount each infrastructure's root (no copy) → GRUB images in its chroot → assemble the raw disk
//! (disk) → convert and pack every output (formats, stemcell).
//!
//! Work that is the same across infrastructures is shared through the layer cache (the OS
//! image stages and every stemcell stage whose key does not depend on the infrastructure run
//! once); the disk assembly and packing of the infrastructures then run in parallel.

use crate::disk::{self, BootModes, DiskIds, DiskSize, DiskSpec, GrubPassword, PartitionTable};
use crate::formats::{Firmware, OvfOptions};
use crate::progress::Steps;
use crate::recipe::agent_settings::AgentConfig;
use crate::recipe::arch::Arch;
use crate::recipe::infrastructure::{self, BootMode, Infrastructure};
use crate::recipe::os;
use crate::recipe::plan::Plan;
use crate::recipe::resolve::{resolve, PlanOptions};
use crate::rootfs::chroot::{sh_quote, Session};
use crate::rootfs::merged::{self, MergedRoot};
use crate::rootfs::{interrupt, layers::LayerStore};
use crate::stage::inputs;
use crate::stage::runner::{self, RunOptions, StepTiming};
use crate::stemcell::image::ImageKind;
use crate::stemcell::pack::{self, ImageSource, Packed};
use crate::stemcell::spec::InfrastructureStemcells;
use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// What the user asked for.
#[derive(Clone, Debug)]
pub struct BuildRequest {
    /// Directory holding `stages/`, `assets/`, `infrastructures/`.
    pub root: PathBuf,
    pub infrastructures: Vec<String>,
    pub version: String,
    pub os: String,
    /// The architecture to build for.
    pub arch: Arch,
    /// Build on this OS image tarball instead of building the OS image stages.
    pub os_image: Option<PathBuf>,
    pub mirror: Option<String>,
    /// Build inputs by name (`bosh-agent`, `bosh-blobstore-dav`, ...): PATH or URL and sha256.
    /// Each is given or else the release pinned in `assets/`; the agent is always required.
    pub inputs: Vec<(&'static str, Option<String>, Option<String>)>,
    /// Build without the blobstore CLIs that were not given (`--no-blobstore-clis`).
    pub no_blobstore_clis: bool,
    /// GRUB superuser password; random per build when absent.
    pub grub_password: Option<String>,
    pub work_dir: PathBuf,
    pub output_dir: PathBuf,
    pub force: bool,
    /// Keep the raw disks in `<work_dir>/disks/` instead of removing them after packing.
    pub keep_disks: bool,
}

/// One stemcell written.
pub struct Built {
    pub infrastructure: String,
    pub packed: Vec<Packed>,
    pub grub_password: Option<String>,
}

/// The timing report and the stemcells.
pub struct Outcome {
    pub stemcells: Vec<Built>,
    pub timings: Vec<StepTiming>,
}

/// Runs the whole build. Everything is validated (infrastructure and OS names, the agent's
/// digest, the OS image tarball) before the first stage runs.
pub fn build(req: &BuildRequest) -> Result<Outcome> {
    // First, while this is the only thread: the merged roots are mounted in here.
    merged::enter_private_mount_namespace()?;
    interrupt::install();
    let infras: Vec<Infrastructure> = req
        .infrastructures
        .iter()
        .map(|n| infrastructure::load(&req.root, n))
        .collect::<Result<_>>()?;
    for infra in &infras {
        infra.manifest_architecture(req.arch)?;
    }
    // The OS, its architecture and the version too, before any directory is made or input
    // downloaded.
    let os = os::load(&req.root, &req.os)?;
    os.definition.for_arch(req.arch, &os.file)?;
    crate::stemcell::naming::check_name_chars("version", &req.version)?;
    // A tarball already there is refused now, not after every stage and the disk.
    if !req.force {
        for infra in &infras {
            for output in &infra.outputs {
                let id = infra.stemcell_id(&req.os, req.arch, output);
                let path = req.output_dir.join(id.tarball_name(&req.version));
                if path.symlink_metadata().is_ok() {
                    bail!(
                        "{}: output exists (use --force to overwrite)",
                        path.display()
                    );
                }
            }
        }
    }
    let start = Instant::now();
    let assets = req.root.join("assets");
    // Every input is chosen (and its flags checked) before any is fetched or any directory made.
    let mut chosen = Vec::new();
    for name in inputs::KNOWN_INPUTS.iter().map(|(n, _)| *n) {
        let given = req.inputs.iter().find(|(n, _, _)| *n == name);
        let location = given.and_then(|(_, l, _)| l.as_deref());
        let sha = given.and_then(|(_, _, s)| s.as_deref());
        if let Some(spec) = inputs::select(
            &assets,
            name,
            req.arch,
            location,
            sha,
            req.no_blobstore_clis,
        )? {
            chosen.push((spec, location.is_none()));
        }
    }
    let dirs = [
        (&req.output_dir, "output directory"),
        (&req.work_dir, "work directory"),
    ];
    for (dir, what) in dirs {
        crate::output::check_dir_can_be_made(dir, what)?;
    }
    for (dir, what) in dirs {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("{}: cannot create the {what}", dir.display()))?;
    }
    let mut timings = Vec::new();

    // Build inputs: fetched, digest-checked and staged for the read-only bind.
    let mut staged = Vec::new();
    for (spec, pinned) in chosen {
        let fetched = match inputs::fetch(&spec, &req.work_dir.join("inputs")) {
            Ok(f) => f,
            // The pinned release cannot be had (offline): say which flags replace it.
            Err(e) if pinned => bail!("{e:#}; {}", inputs::input_hint(&spec.name)),
            Err(e) => return Err(e),
        };
        staged.push((spec, fetched));
    }
    let inputs_dir = req.work_dir.join("run-inputs");
    if inputs_dir.exists() {
        std::fs::remove_dir_all(&inputs_dir)
            .with_context(|| format!("{}: cannot clear", inputs_dir.display()))?;
    }
    let input_vars = inputs::stage_into(&inputs_dir, &staged)?;
    timings.push(step(&Steps::new(false), "inputs", start));

    let base = match &req.os_image {
        Some(tgz) => Some(import_os_image(tgz, &req.work_dir, &req.os, req.arch)?),
        None => None,
    };

    // Stages run one infrastructure at a time (they share the layer cache). As soon as one
    // infrastructure's root is ready, its disk and packing start on a thread of their own,
    // beside the next infrastructure's stages.
    let results: Vec<Result<(Built, Vec<StepTiming>)>> = std::thread::scope(|s| {
        let mut handles = Vec::new();
        let mut failed = None;
        for infra in &infras {
            match stemcell_root(req, infra, &input_vars, &inputs_dir, base.as_deref()) {
                Ok((root, seed, family, stage_timings)) => {
                    timings.extend(stage_timings);
                    handles
                        .push(s.spawn(move || finish_stemcell(req, infra, &root, &seed, &family)));
                }
                Err(e) => {
                    failed = Some(Err(e));
                    break;
                }
            }
        }
        let mut results: Vec<_> = handles
            .into_iter()
            .map(|h| h.join().expect("stemcell thread panicked"))
            .collect();
        results.extend(failed);
        results
    });
    let mut stemcells = Vec::new();
    let mut first_error = None;
    for r in results {
        match r {
            Ok((built, t)) => {
                timings.extend(t);
                stemcells.push(built);
            }
            Err(e) => first_error = first_error.or(Some(e)),
        }
    }
    if let Some(e) = first_error {
        // All stemcells or none: a half-finished set is not a release.
        for p in stemcells.iter().flat_map(|b| &b.packed) {
            let _ = std::fs::remove_file(&p.tarball.path);
        }
        return Err(e);
    }
    Ok(Outcome { stemcells, timings })
}

/// Runs the stages of one infrastructure and mounts the result as one writable root. Returns
/// the root, the seed of its disk ids, the OS family and the stage timings.
fn stemcell_root(
    req: &BuildRequest,
    infra: &Infrastructure,
    input_vars: &[(String, String)],
    inputs_dir: &Path,
    base: Option<&str>,
) -> Result<(MergedRoot, String, String, Vec<StepTiming>)> {
    let options = stemcell_plan_options(
        &req.root,
        &req.os,
        req.arch,
        infra,
        &req.version,
        req.mirror.clone(),
        input_vars,
    )?;
    let mut plan = resolve(&req.root, &options)?;
    if let Some(base_key) = base {
        rebase_on_import(&mut plan, base_key);
    }
    let run = runner::run(
        &plan,
        &RunOptions {
            work_dir: req.work_dir.clone(),
            from_stage: None,
            phase: None,
            quiet: false,
            binds: vec![(
                inputs_dir.to_path_buf(),
                inputs::RUN_INPUTS_NAME.to_string(),
            )],
        },
    )?;
    let timings = run
        .timings
        .iter()
        .map(|t| StepTiming {
            name: format!("{}/{}", infra.name, t.name),
            ..t.clone()
        })
        .collect();
    let root = MergedRoot::mount(&run.store, &run.layers, &infra.name)?;
    let seed = format!(
        "{}/{}/{}/{}",
        req.os, infra.name, req.version, run.layers[0]
    );
    // `run` drops here, which releases the layer store for the next infrastructure.
    Ok((root, seed, plan.os.family.clone(), timings))
}

/// What one infrastructure's stages are resolved with: the build inputs' digests, its
/// `agent.json` and the builder's commit. `stemcell plan` resolves the same way, so its keys
/// are the build's.
pub fn stemcell_plan_options(
    root: &Path,
    os: &str,
    arch: Arch,
    infra: &Infrastructure,
    version: &str,
    mirror: Option<String>,
    input_vars: &[(String, String)],
) -> Result<PlanOptions> {
    let agent_json =
        AgentConfig::from_infrastructure_value(&infra.name, os, &infra.agent)?.to_json();
    let mut extra_vars = input_vars.to_vec();
    extra_vars.push(("agent_json".into(), agent_json));
    extra_vars.push(("stemcell_git_sha1".into(), git_sha1(root)));
    Ok(PlanOptions {
        os: os.to_string(),
        arch,
        infrastructure: Some(infra.name.clone()),
        mirror,
        build_time: std::env::var("BUILD_TIME").ok().filter(|t| !t.is_empty()),
        stemcell_version: Some(version.to_string()),
        extra_vars,
        source_date_epoch: disk::layout::source_date_epoch_from_env()?,
    })
}

/// GRUB images, the raw disk and every output of one infrastructure.
fn finish_stemcell(
    req: &BuildRequest,
    infra: &Infrastructure,
    merged: &MergedRoot,
    seed: &str,
    os_family: &str,
) -> Result<(Built, Vec<StepTiming>)> {
    let root = merged.path();
    let mut timings = Vec::new();
    let steps = Steps::new(false);
    let start = Instant::now();
    steps.start(&format!("{}/grub-images", infra.name));
    let spec = disk_spec(req, infra, seed, os_family)?;
    let root_uuid = spec.ids.root_fs.to_string();
    let mut session = Session::open(root)?;
    if let Some(t) = spec.source_date_epoch {
        session.set_env("SOURCE_DATE_EPOCH", &t.to_string());
    }
    let warden = infra.outputs.iter().all(|o| o.image == ImageKind::FilesTar);
    if !warden {
        disk::grub::prepare_root(root, &root_uuid)?;
        for argv in disk::grub::mkimage_commands(spec.arch, spec.boot.bios, spec.boot.uefi) {
            let cmd = argv
                .iter()
                .map(|a| sh_quote(a))
                .collect::<Vec<_>>()
                .join(" ");
            let out = session.output(&cmd)?;
            if out.status != 0 {
                bail!(
                    "{}: grub-mkimage failed in the image: {}",
                    root.display(),
                    out.output.trim()
                );
            }
        }
    }
    let packages = session.output("dpkg -l")?;
    if packages.status != 0 {
        bail!(
            "{}: dpkg -l failed in the image: {}",
            root.display(),
            packages.output.trim()
        );
    }
    let dev_tools =
        std::fs::read(root.join("var/vcap/bosh/etc/dev_tools_file_list")).unwrap_or_default();
    timings.push(step(&steps, &format!("{}/grub-images", infra.name), start));
    interrupt::check()?;

    let start = Instant::now();
    steps.start(&format!("{}/disk", infra.name));
    // The raw disk is an intermediate (removed with the scratch layer) unless asked to keep it.
    let raw = if req.keep_disks {
        let disks = req.work_dir.join("disks");
        std::fs::create_dir_all(&disks)
            .with_context(|| format!("{}: cannot create", disks.display()))?;
        disks.join(format!("{}.raw", infra.name))
    } else {
        merged.scratch_path("disk.raw")
    };
    let assembled = if warden {
        None
    } else {
        Some(disk::assemble(root, &spec, &raw, true)?)
    };
    timings.push(step(&steps, &format!("{}/disk", infra.name), start));
    interrupt::check()?;

    let start = Instant::now();
    steps.start(&format!("{}/pack", infra.name));
    let ovf = OvfOptions {
        name: "stemcell".into(),
        firmware: if spec.boot.uefi {
            Firmware::Efi
        } else {
            Firmware::Bios
        },
        cpus: 1,
        memory_mib: 512,
    };
    let mut packed = Vec::new();
    for s in infra.pack_specs(
        &req.os,
        req.arch,
        &req.version,
        packages.output.as_bytes(),
        &dev_tools,
        &ovf,
        req.force,
    )? {
        let source = if s.image_kind == ImageKind::FilesTar {
            ImageSource::RootDir(root)
        } else {
            ImageSource::Disk(&raw)
        };
        let result = pack::pack(&s, source, &req.output_dir).and_then(|p| {
            packed.push(p);
            interrupt::check()
        });
        if let Err(e) = result {
            // This infrastructure's stemcells come all or not at all, as the whole set does.
            for p in &packed {
                let _ = std::fs::remove_file(&p.tarball.path);
            }
            return Err(e);
        }
    }
    timings.push(step(&steps, &format!("{}/pack", infra.name), start));
    let grub_password = assembled.and_then(|a| a.generated_grub_password);
    Ok((
        Built {
            infrastructure: infra.name.clone(),
            packed,
            grub_password,
        },
        timings,
    ))
}

/// The infrastructure's disk: its size, layout, boot modes and console options; ids derived
/// from the inputs when SOURCE_DATE_EPOCH asks for a reproducible build.
fn disk_spec(
    req: &BuildRequest,
    infra: &Infrastructure,
    seed: &str,
    os_family: &str,
) -> Result<DiskSpec> {
    let epoch = disk::layout::source_date_epoch_from_env()?;
    let ids = match epoch {
        Some(e) => DiskIds::from_seed(&format!("{seed}/{e}")),
        None => DiskIds::random()?,
    };
    let mut spec = DiskSpec::new(ids)?;
    spec.arch = req.arch;
    spec.size = DiskSize::Mib(infra.disk_size_mib);
    if let Some(layout) = &infra.disk {
        spec.table = match layout.layout {
            infrastructure::PartitionTable::Mbr => PartitionTable::Mbr,
            infrastructure::PartitionTable::Gpt => PartitionTable::Gpt,
        };
        spec.boot = BootModes {
            bios: layout.boot.contains(&BootMode::Bios),
            uefi: layout.boot.contains(&BootMode::Uefi),
        };
    }
    if req.arch != Arch::Amd64 {
        // UEFI only: there is no BIOS to boot from on arm64.
        spec.boot.bios = false;
        if !spec.boot.uefi {
            bail!(
                "{}: {} boots by BIOS only, and {} stemcells boot by UEFI",
                infra.file.display(),
                infra.name,
                req.arch
            );
        }
    }
    spec.kernel_options = disk::bootcfg::kernel_options_for(req.arch, spec.kernel_options);
    spec.kernel_options
        .extend(infra.kernel_cmdline.iter().cloned());
    if os_family == "debian" {
        // Debian's initramfs-tools sleeps for the whole rootdelay on every boot (Ubuntu's only
        // waits up to it for the root device): five minutes lost per boot.
        spec.kernel_options.retain(|o| !o.starts_with("rootdelay="));
    }
    if let Some(p) = &req.grub_password {
        spec.grub_password = GrubPassword::Plain(p.clone());
    } else if epoch.is_some() {
        bail!("SOURCE_DATE_EPOCH is set but no --grub-password was given: a random GRUB password would make the build differ");
    }
    Ok(spec)
}

/// Imports an OS image tarball as the bottom layer, keyed by its content. Refuses unsafe
/// members (absolute, `..`, devices outside /dev) and a tree that is not an OS.
fn import_os_image(tgz: &Path, work_dir: &Path, os: &str, arch: Arch) -> Result<String> {
    let key = import_key(tgz)?;
    let store = LayerStore::open(work_dir)?;
    let same_arch = |dir: &Path| match crate::rootfs::chroot::root_arch(dir) {
        Some(found) if found != arch => {
            bail!(
                "{}: an {found} OS image, and this build is for {arch} (--arch {found})",
                tgz.display()
            )
        }
        _ => Ok(()),
    };
    if store.is_done(&key) {
        same_arch(&store.dir().join(&key))?;
        crate::rootfs::cache::touch(&store, &key);
        return Ok(key);
    }
    let dir = store.begin(&key)?;
    let result = crate::imagetest::extract::extract(tgz, &dir).and_then(|()| {
        if !dir.join("etc/os-release").exists() && !dir.join("usr/lib/os-release").exists() {
            bail!("{}: not an OS image (no /etc/os-release)", tgz.display());
        }
        if !dir.join("usr/bin/dpkg").exists() {
            bail!(
                "{}: not a Debian or Ubuntu OS image (no /usr/bin/dpkg)",
                tgz.display()
            );
        }
        same_arch(&dir)
    });
    if let Err(e) = result {
        store.abandon(&key);
        return Err(e);
    }
    store.commit(&key)?;
    crate::rootfs::cache::record(
        &store,
        &key,
        &crate::rootfs::cache::LayerRecord {
            os: os.to_string(),
            phase: "import".into(),
            stage: tgz
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            ..Default::default()
        },
    );
    Ok(key)
}

/// The layer key of an imported OS image: its content's digest.
pub fn import_key(tgz: &Path) -> Result<String> {
    let mut f =
        std::fs::File::open(tgz).with_context(|| format!("{}: cannot open", tgz.display()))?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h).with_context(|| format!("{}: cannot read", tgz.display()))?;
    Ok(format!("import-{}", &hex::encode(h.finalize())[..32]))
}

/// Keeps the stemcell stages only, on top of the imported layer, re-keyed so that their cache
/// entries belong to that OS image and to nothing else.
pub fn rebase_on_import(plan: &mut Plan, base_key: &str) {
    use crate::recipe::stage::Phase;
    plan.bootstrap_key = base_key.to_string();
    plan.stages.retain(|s| s.phase == Phase::Stemcell);
    let mut prev = base_key.to_string();
    for s in &mut plan.stages {
        let k = hex::encode(Sha256::digest(format!("{prev}\0{}", s.key)));
        s.key = k.clone();
        prev = k;
    }
}

/// The builder's own git HEAD (plus `+` when the tree is dirty), as the official
/// `stemcell_git_sha1`; `unknown` outside a checkout.
fn git_sha1(root: &Path) -> String {
    let head = duct::cmd!("git", "-C", root, "rev-parse", "HEAD")
        .stderr_null()
        .read();
    match head {
        Ok(h) => {
            let dirty = duct::cmd!(
                "git",
                "-C",
                root,
                "status",
                "--porcelain",
                "--untracked-files=no"
            )
            .stderr_null()
            .read()
            .map(|s| !s.trim().is_empty())
            .unwrap_or(false);
            format!("{}{}", h.trim(), if dirty { "+" } else { "" })
        }
        Err(_) => "unknown".into(),
    }
}

/// Ends a step: its line on the progress display and its timing.
fn step(steps: &Steps, name: &str, start: Instant) -> StepTiming {
    steps.finish(name, false, start.elapsed());
    StepTiming {
        name: name.to_string(),
        cached: false,
        duration: start.elapsed(),
    }
}

/// "=== Build duration report": every step, then the total.
pub fn report(timings: &[StepTiming]) -> String {
    let width = timings.iter().map(|t| t.name.len()).max().unwrap_or(5);
    let mut s = String::from("=== Build duration report\n");
    for t in timings {
        let how = if t.cached {
            "cached".to_string()
        } else {
            format!("{:.1}s", t.duration.as_secs_f64())
        };
        s.push_str(&format!("  {:width$}  {how}\n", t.name));
    }
    let total: Duration = timings.iter().map(|t| t.duration).sum();
    s.push_str(&format!(
        "  {:width$}  {:.1}s\n",
        "total",
        total.as_secs_f64()
    ));
    s
}
