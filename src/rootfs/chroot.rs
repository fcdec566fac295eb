//! Chroot sessions. Every command runs in a private mount and PID namespace, so `/proc`, `/sys`,
//! `/dev` and `/dev/pts` mounted for it vanish with the process, even on SIGKILL.
//!
//! How a command is started: `unshare --mount --pid --fork --kill-child --propagation private`
//! runs the host's `/bin/sh` with [`SETUP`] as PID 1 of a new PID namespace. That script mounts
//! the overlay (when the root is a layer stack), `/proc`, `/sys`, a private `/dev` and a private
//! copy of the host's `resolv.conf` — all inside the private mount namespace — and then `exec`s
//! the user's script in the chroot with a clean environment. The mounts exist only in that
//! namespace: when its last process exits (normally, by error, or by SIGKILL) the kernel drops
//! them. `unshare` itself gets `PR_SET_PDEATHSIG=SIGKILL`, so if this program dies the whole chain
//! dies with it (`--kill-child` takes PID 1 down, which takes the PID namespace down).

use super::emulation::{self, Emulator};
use crate::recipe::arch::Arch;
use anyhow::{bail, Context, Result};
use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// What a session's `/` is.
#[derive(Clone, Debug)]
enum RootSpec {
    /// A plain directory, used in place.
    Dir,
    /// An overlay mounted (inside each command's namespace only) at `mountpoint`.
    Overlay(OverlaySpec),
}

/// An overlay of `upper` over `lower` layers. All layer names are relative to `layers_dir`
/// (relative names keep the mount options under the kernel's one-page limit with many layers).
#[derive(Clone, Debug)]
pub struct OverlaySpec {
    pub layers_dir: PathBuf,
    /// Lower layers, topmost first.
    pub lower: Vec<String>,
    /// Writable layer; `None` mounts the lower layers read-only.
    pub upper: Option<String>,
    /// Overlay work directory (same filesystem as `upper`, empty).
    pub work: Option<String>,
    /// Empty directory the merged view is mounted on, inside the namespace only.
    pub mountpoint: PathBuf,
}

impl OverlaySpec {
    /// The overlay mount options, to be used with `layers_dir` as the working directory.
    pub fn mount_options(&self) -> String {
        let mut options = format!("lowerdir={}", self.lower.join(":"));
        if let Some(upper) = &self.upper {
            let work = self.work.as_deref().unwrap_or_default();
            options.push_str(&format!(",upperdir={upper},workdir={work}"));
        }
        options
    }
}

/// A root directory commands can be run in.
pub struct Session {
    root: PathBuf,
    spec: RootSpec,
    env: Vec<(String, String)>,
    /// Host directories bound read-only under `/run/<name>` in the chroot.
    binds: Vec<(PathBuf, String)>,
    /// How a foreign root's programs run; `None` for a root of the host's architecture.
    emulator: Option<Emulator>,
}

/// The outcome of a command: exit status (or -signal) and combined output.
pub struct CommandOutput {
    pub status: i32,
    pub output: String,
}

/// How the command runs once the namespace is set up.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Exec {
    /// `/bin/sh -e -c SCRIPT` inside the chroot, with /proc, /sys, /dev and resolv.conf mounted.
    Chroot,
    /// The host's `/bin/sh -e -c SCRIPT` with `$ROOT` naming the (mounted) root and nothing else
    /// mounted: for exporting the tree as it will ship.
    Host,
    /// Like [`Exec::Chroot`] but `/run` and `resolv.conf` are left as the image has them, as
    /// the official builder's spec chroot sees the image: for checking what ships.
    Inspect,
}

/// Runs as PID 1 of the new namespaces, after [`emulation::SHELL_FUNCTION`]. Arguments:
/// exec-kind root layers-dir overlay-options (empty for a plain directory) script binds
/// binfmt-rule (empty for a native root), then NAME=VALUE pairs for the clean environment.
const SETUP: &str = r#"set -eu
kind=$1 R=$2 layers=$3 overlay=$4 script=$5 binds=$6 rule=$7
shift 7
# The mounts a stage may undo (the private /run, the resolv.conf bind), as shell text run where
# the script runs: a mount made outside a user namespace is locked inside it. Uses $R, $binds.
run_mounts='
mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs "$R/run"
# Read-only binds of host directories (build inputs), on the private /run tmpfs: they vanish
# with the command and never reach a layer.
if [ -n "$binds" ]; then
  printf "%s\n" "$binds" | while IFS="	" read -r src dst; do
    mkdir -p "$R/run/$dst"
    mount --bind -o ro "$src" "$R/run/$dst"
  done
fi
mkdir -m 1777 "$R/run/lock"
# The host resolv.conf, as a private copy: writes in the chroot never reach the host file.
rc="$R/etc/resolv.conf"
if [ -e /etc/resolv.conf ]; then
  cp /etc/resolv.conf "$R/dev/.host-resolv.conf"
  if [ -L "$rc" ]; then
    t=$(readlink "$rc")
    case $t in /*) t="$R$t" ;; ../*) t="$R/${t#../}" ;; *) t="$R/etc/$t" ;; esac
    case $t in "$R"/run/*) mkdir -p "${t%/*}"; cp /etc/resolv.conf "$t" ;; esac
  elif [ -f "$rc" ]; then
    mount --bind "$R/dev/.host-resolv.conf" "$rc"
  fi
fi
'
# The user's script in the chroot, after MOUNTS (empty, or $run_mounts); a foreign root's
# programs run under the emulator, in a user namespace of their own made after the mounts of
# proc, sys and dev (see rootfs/emulation.rs).
in_chroot() {
  mounts=$1
  shift
  if [ -z "$rule" ]; then
    eval "$mounts"
    exec env -i "$@" chroot "$R" /bin/sh -e -c "$script"
  fi
  mkdir "$R/dev/.emulation"
  emulated "$R/proc" "$R/dev/.emulation" "$R/proc/sys/fs/binfmt_misc" "$rule" \
    /bin/sh -c 'set -eu
      R=$1 script=$2 binds=$3 mounts=$4
      shift 4
      eval "$mounts"
      exec env -i "$@" chroot "$R" /bin/sh -e -c "$script"' in-namespace "$R" "$script" "$binds" "$mounts" "$@"
}
if [ -n "$overlay" ]; then
  cd "$layers"
  mount -t overlay overlay -o "$overlay" "$R"
  cd /
fi
if [ "$kind" = host ]; then
  export ROOT="$R"
  exec env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C ROOT="$R" /bin/sh -e -c "$script"
fi
mount -t proc proc "$R/proc"
mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "$R/sys"
mount -t tmpfs -o mode=0755,nosuid tmpfs "$R/dev"
for d in null:1:3 zero:1:5 full:1:7 random:1:8 urandom:1:9 tty:5:0; do
  IFS=: read n ma mi <<EOF
$d
EOF
  mknod -m 0666 "$R/dev/$n" c "$ma" "$mi"
done
mkdir "$R/dev/pts" "$R/dev/shm"
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts "$R/dev/pts"
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$R/dev/shm"
ln -s pts/ptmx "$R/dev/ptmx"
ln -s /proc/self/fd "$R/dev/fd"
ln -s /proc/self/fd/0 "$R/dev/stdin"
ln -s /proc/self/fd/1 "$R/dev/stdout"
ln -s /proc/self/fd/2 "$R/dev/stderr"
if [ "$kind" = inspect ]; then
  in_chroot "" "$@"
fi
in_chroot "$run_mounts" "$@"
"#;

/// Proxy variables that pass from the caller into the chroot, in both spellings.
const PROXY_VARS: &[&str] = &[
    "http_proxy",
    "https_proxy",
    "ftp_proxy",
    "no_proxy",
    "all_proxy",
];

impl Session {
    /// A session on a plain root directory, emulated when its programs are of another
    /// architecture than the host's.
    pub fn open(root: &Path) -> Result<Self> {
        anyhow::ensure!(
            root.join("bin/sh").exists() || root.join("usr/bin/sh").exists(),
            "{}: not a root filesystem (no /bin/sh)",
            root.display()
        );
        let emulator = match root_arch(root) {
            Some(arch) => emulation::for_arch(arch)?,
            None => None,
        };
        Ok(Self {
            root: root.to_path_buf(),
            spec: RootSpec::Dir,
            env: default_env(),
            binds: Vec::new(),
            emulator,
        })
    }

    /// A session on an overlay of layers; nothing is mounted until a command runs, and then
    /// only inside that command's namespace. Emulated when the layers' programs are of another
    /// architecture than the host's.
    pub fn overlay(spec: OverlaySpec) -> Result<Self> {
        anyhow::ensure!(
            !spec.lower.is_empty(),
            "overlay session needs at least one lower layer"
        );
        for l in &spec.lower {
            anyhow::ensure!(
                !l.contains([':', ',']),
                "{l}: layer names may not contain ':' or ','"
            );
        }
        std::fs::create_dir_all(&spec.mountpoint)
            .with_context(|| format!("{}: cannot create mount point", spec.mountpoint.display()))?;
        // The topmost layer holding the shell says what the stack's programs are.
        let arch = spec
            .lower
            .iter()
            .find_map(|l| root_arch(&spec.layers_dir.join(l)));
        let emulator = match arch {
            Some(arch) => emulation::for_arch(arch)?,
            None => None,
        };
        Ok(Self {
            root: spec.mountpoint.clone(),
            spec: RootSpec::Overlay(spec),
            env: default_env(),
            binds: Vec::new(),
            emulator,
        })
    }

    /// The root as seen inside the namespace (for an overlay, the mount point: empty on the host).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Makes the host directory `src` readable at `/run/<name>` inside the chroot, for every
    /// command of this session (read-only; nothing is written into the root).
    pub fn bind_run_dir(&mut self, src: &Path, name: &str) {
        self.binds.push((src.to_path_buf(), name.to_string()));
    }

    /// Adds or replaces a variable of the command environment.
    pub fn set_env(&mut self, name: &str, value: &str) {
        self.env.retain(|(n, _)| n != name);
        self.env.push((name.to_string(), value.to_string()));
    }

    /// Runs `script` with `/bin/sh -e` inside the root and captures stdout and stderr together.
    pub fn output(&self, script: &str) -> Result<CommandOutput> {
        self.output_as(Exec::Chroot, script)
    }

    /// [`Session::output`] with the given kind of execution.
    pub fn output_as(&self, exec: Exec, script: &str) -> Result<CommandOutput> {
        let mut buf = Vec::new();
        let status = self.run_as(exec, script, None, &mut buf)?;
        Ok(CommandOutput {
            status,
            output: String::from_utf8_lossy(&buf).into_owned(),
        })
    }

    /// Runs `script` with `/bin/sh -e` in the chroot, feeding it `stdin` and streaming its
    /// combined stdout and stderr to `log` as it comes. Returns the exit status (or -signal).
    pub fn run(&self, script: &str, stdin: Option<&[u8]>, log: &mut dyn Write) -> Result<i32> {
        self.run_as(Exec::Chroot, script, stdin, log)
    }

    /// Like [`Session::run`], but a non-zero status is an error.
    pub fn run_checked(
        &self,
        script: &str,
        stdin: Option<&[u8]>,
        log: &mut dyn Write,
    ) -> Result<()> {
        let status = self.run(script, stdin, log)?;
        if status != 0 {
            bail!("{}", describe_status(status));
        }
        Ok(())
    }

    /// Runs with the given [`Exec`] kind, streaming combined output to `log`.
    pub fn run_as(
        &self,
        exec: Exec,
        script: &str,
        stdin: Option<&[u8]>,
        log: &mut dyn Write,
    ) -> Result<i32> {
        let (mut reader, writer) = pipe()?;
        let stdin = match stdin {
            None => Stdio::null(),
            Some(bytes) => {
                // A file, not a pipe: no writer thread, no deadlock with a command that does not read.
                let mut f = tempfile::tempfile().context("cannot create a temporary file")?;
                f.write_all(bytes)
                    .context("cannot write a temporary file")?;
                std::io::Seek::rewind(&mut f)?;
                Stdio::from(f)
            }
        };
        let mut child = self.spawn(
            exec,
            script,
            stdin,
            Stdio::from(writer.try_clone()?),
            Stdio::from(writer),
        )?;
        let mut buf = [0u8; 64 * 1024];
        let copy = loop {
            if crate::rootfs::interrupt::requested() {
                break Err(anyhow::anyhow!("interrupted"));
            }
            // Wait at most 200 ms so a stop request is seen even if another thread took the signal.
            if !readable(&reader, 200) {
                continue;
            }
            match reader.read(&mut buf) {
                Ok(0) => break Ok(()),
                Ok(n) => {
                    if let Err(e) = log.write_all(&buf[..n]) {
                        break Err(anyhow::Error::from(e).context("cannot write the log"));
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => break Err(anyhow::Error::from(e).context("cannot read command output")),
            }
        };
        if copy.is_err() {
            let _ = child.kill();
        }
        let status = child.wait().context("cannot wait for the chroot command")?;
        copy?;
        crate::rootfs::interrupt::check()?;
        Ok(status
            .code()
            .unwrap_or_else(|| -status.signal().unwrap_or(0)))
    }

    /// Starts a command in fresh namespaces with the given stdio. The caller waits for it.
    pub fn spawn(
        &self,
        exec: Exec,
        script: &str,
        stdin: Stdio,
        stdout: Stdio,
        stderr: Stdio,
    ) -> Result<Child> {
        let (layers, overlay) = match &self.spec {
            RootSpec::Dir => (PathBuf::new(), String::new()),
            RootSpec::Overlay(o) => (o.layers_dir.clone(), o.mount_options()),
        };
        let mut cmd = private_namespaces();
        let setup = format!("{}{SETUP}", emulation::SHELL_FUNCTION);
        cmd.args(["--", "/bin/sh", "-c", &setup, "stemcell-setup"])
            .arg(match exec {
                Exec::Host => "host",
                Exec::Inspect => "inspect",
                Exec::Chroot => "chroot",
            })
            .arg(&self.root)
            .arg(&layers)
            .args([&overlay, script])
            .arg(
                self.binds
                    .iter()
                    .map(|(src, dst)| format!("{}\t{dst}", src.display()))
                    .collect::<Vec<_>>()
                    .join("\n"),
            )
            .arg(
                self.emulator
                    .as_ref()
                    .map(Emulator::binfmt_rule)
                    .unwrap_or_default(),
            )
            .args(
                self.env
                    .iter()
                    .map(|(n, v)| OsString::from(format!("{n}={v}"))),
            )
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("LC_ALL", "C")
            .stdin(stdin)
            .stdout(stdout)
            .stderr(stderr);
        // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        cmd.spawn().with_context(|| {
            format!(
                "{}: cannot start a command in the chroot (unshare)",
                self.root.display()
            )
        })
    }
}

/// The architecture of the root's shell (dash), when it is an ELF executable the build knows.
pub fn root_arch(root: &Path) -> Option<Arch> {
    ["usr/bin/dash", "bin/dash"].iter().find_map(|p| {
        let mut header = [0u8; 20];
        let mut f = std::fs::File::open(root.join(p)).ok()?;
        f.read_exact(&mut header).ok()?;
        Arch::of_elf(&header)
    })
}

/// The clean environment of every chroot command: a fixed PATH and locale, plus the caller's
/// proxy settings.
fn default_env() -> Vec<(String, String)> {
    // mkinitramfs compresses the initramfs with `zstd -9`, on one core by default. zstd writes
    // the same bytes whatever its thread count, so use them all (130 MB initramfs: 3.2 s on one
    // core, 1.9 s on two, byte-identical output).
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut env = vec![
        ("ZSTD_NBTHREADS".to_string(), threads.to_string()),
        (
            "PATH".to_string(),
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string(),
        ),
        ("LC_ALL".to_string(), "C".to_string()),
        ("HOME".to_string(), "/root".to_string()),
        ("DEBIAN_FRONTEND".to_string(), "noninteractive".to_string()),
    ];
    for name in PROXY_VARS {
        for n in [name.to_string(), name.to_uppercase()] {
            if let Ok(v) = std::env::var(&n) {
                env.push((n, v));
            }
        }
    }
    env
}

/// Whether `f` has data (or EOF) within `ms` milliseconds.
fn readable(f: &std::fs::File, ms: i32) -> bool {
    use std::os::fd::AsRawFd;
    let mut pfd = libc::pollfd {
        fd: f.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd for the duration of the call.
    let n = unsafe { libc::poll(&mut pfd, 1, ms) };
    n > 0
}

/// A close-on-exec pipe: (read end, write end).
fn pipe() -> Result<(std::fs::File, std::fs::File)> {
    use std::os::fd::FromRawFd;
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills both descriptors on success; each is owned by exactly one File.
    unsafe {
        if libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) != 0 {
            return Err(std::io::Error::last_os_error()).context("cannot create a pipe");
        }
        Ok((
            std::fs::File::from_raw_fd(fds[0]),
            std::fs::File::from_raw_fd(fds[1]),
        ))
    }
}

/// "exit status 3" or "killed by signal 9".
pub fn describe_status(status: i32) -> String {
    if status < 0 {
        format!("killed by signal {}", -status)
    } else {
        format!("exit status {status}")
    }
}

/// Quotes `s` for a POSIX shell.
pub fn sh_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-./=:@%+,".contains(&b))
    {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(sh_quote("/etc/ssh"), "/etc/ssh");
        assert_eq!(sh_quote("a b"), "'a b'");
        assert_eq!(sh_quote("it's"), r"'it'\''s'");
        assert_eq!(sh_quote(""), "''");
    }
}

/// `unshare` into a private mount and PID namespace whose processes all die with it (and with
/// us: `--kill-child`); more options of unshare or the program to run follow. Mounts made
/// inside vanish with it.
pub fn private_namespaces() -> Command {
    let mut cmd = Command::new("unshare");
    cmd.args([
        "--mount",
        "--pid",
        "--fork",
        "--kill-child",
        "--propagation",
        "private",
    ]);
    cmd
}
