//! The stand-in agent (tests/fixtures/standin-agent/bosh-agent) run on the build host: its
//! reading of agent.json, its walk over the settings sources and its one-line verdict. The
//! host kernel cannot mount ISO9660, so `mount`/`umount` are replaced by stand-ins that copy a
//! directory named after the device; the checks that need a booted stemcell (root by UUID,
//! hostname, fresh host keys) are exercised by the boot tests.

#[path = "common/boot.rs"]
mod boot;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use stemcell::recipe::agent_settings::AgentConfig;

struct Host {
    dir: tempfile::TempDir,
}

impl Host {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        // mount -o ro DEVICE DIR: copy <DEVICE>.tree/ into DIR; umount DIR: empty it.
        let mount = "#!/bin/sh\n[ -d \"$3.tree\" ] || exit 32\ncp -r \"$3.tree/.\" \"$4\"\n";
        let umount = "#!/bin/sh\nrm -rf \"$1\"/*\n";
        for (name, text) in [("mount", mount), ("umount", umount)] {
            std::fs::write(bin.join(name), text).unwrap();
            std::fs::set_permissions(bin.join(name), std::fs::Permissions::from_mode(0o755))
                .unwrap();
        }
        Self { dir }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    /// A fake block device whose "file system" holds `files`.
    fn device(&self, name: &str, files: &[(&str, &str)]) -> String {
        let dev = self.path(name);
        std::fs::write(&dev, b"").unwrap();
        for (path, content) in files {
            let p = self.path(&format!("{name}.tree/{path}"));
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, content).unwrap();
        }
        dev.display().to_string()
    }

    fn run(&self, config: &AgentConfig, argv: &[&str]) -> (i32, String, String) {
        let json = self.path("agent.json");
        std::fs::write(&json, config.to_json()).unwrap();
        let console = self.path("console");
        let _ = std::fs::remove_file(&console);
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/standin-agent/bosh-agent");
        let out = Command::new("bash")
            .arg(script)
            .args(argv)
            .env(
                "PATH",
                format!("{}:/usr/bin:/bin", self.path("bin").display()),
            )
            .env("STANDIN_CONFIG", &json)
            .env("STANDIN_CONSOLE", &console)
            .env("STANDIN_NO_SLEEP", "1")
            .env("STANDIN_WAIT", "2")
            .output()
            .unwrap();
        let line = std::fs::read_to_string(&console).unwrap_or_default();
        assert_eq!(line.lines().count(), 1, "one line on the console: {line:?}");
        (
            out.status.code().unwrap_or(-1),
            line.trim_end().to_string(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }
}

const ARGV: &[&str] = &["-P", "ubuntu", "-C", "/var/vcap/bosh/agent.json"];

/// On the host the run gets past argv, agent.json and settings, and stops at the first check
/// that needs the booted stemcell.
fn assert_stops_after_settings(line: &str, settings: &str) {
    assert!(line.starts_with("STANDIN-AGENT FAIL "), "{line}");
    let check = line["STANDIN-AGENT FAIL ".len()..]
        .split(':')
        .next()
        .unwrap();
    assert!(
        ["root", "hostname", "ssh_host_keys"].contains(&check),
        "{line}"
    );
    assert!(
        line.contains(" argv=-P_ubuntu_-C_/var/vcap/bosh/agent.json "),
        "{line}"
    );
    assert!(line.contains(settings), "expected `{settings}` in {line}");
}

#[test]
fn openstack_settings_come_from_the_config_drive_after_the_missing_bootstrap_file() {
    let host = Host::new();
    let settings = serde_json::to_string_pretty(&boot::agent_settings("os-agent-1")).unwrap();
    let missing = host.path("no-such-label").display().to_string();
    let drive = host.device("config-2", &[("ec2/latest/user-data", &settings)]);
    let mut config = AgentConfig::for_build("openstack", "debian-bookworm").unwrap();
    // Point the config drive's label paths at the fake devices: first absent, then present.
    if let stemcell::recipe::agent_settings::Source::ConfigDrive { disk_paths, .. } =
        &mut config.infrastructure.settings.sources[1]
    {
        *disk_paths = vec![missing, drive.clone()];
    }
    let (code, line, _) = host.run(&config, ARGV);
    assert_eq!(code, 1);
    assert!(
        line.contains(" agent_json=File,ConfigDrive,HTTP "),
        "{line}"
    );
    assert_stops_after_settings(
        &line,
        &format!("settings=ConfigDrive:{drive}:ec2/latest/user-data:agent_id=os-agent-1"),
    );
}

#[test]
fn vsphere_settings_come_from_env_on_the_cdrom() {
    // The CDROM source always reads /dev/sr0: only runnable where the host has none.
    if Path::new("/dev/sr0").exists() {
        eprintln!("skipped: the host has a /dev/sr0");
        return;
    }
    let host = Host::new();
    let config = AgentConfig::for_build("vsphere", "ubuntu-noble").unwrap();
    let (code, line, _) = host.run(&config, ARGV);
    assert_eq!(code, 1);
    assert!(
        line.starts_with("STANDIN-AGENT FAIL settings: no source (CDROM) gave settings within 2s"),
        "{line}"
    );
    assert!(line.contains("agent_json=CDROM"), "{line}");
}

#[test]
fn file_source_settings_without_agent_id_are_refused() {
    let host = Host::new();
    let settings = host.path("settings.json");
    std::fs::write(&settings, r#"{"vm": {"name": "x"}}"#).unwrap();
    let mut config = AgentConfig::for_build("warden", "ubuntu-noble").unwrap();
    config.infrastructure.settings.sources = vec![stemcell::recipe::agent_settings::Source::File {
        settings_path: settings.display().to_string(),
        meta_data_path: None,
        user_data_path: None,
    }];
    let (code, line, _) = host.run(&config, ARGV);
    assert_eq!(code, 1);
    assert!(
        line.starts_with(&format!(
            "STANDIN-AGENT FAIL settings: File:{} has no agent_id",
            settings.display()
        )),
        "{line}"
    );
    std::fs::write(&settings, r#"{"agent_id": "w-1"}"#).unwrap();
    let (_, line, _) = host.run(&config, ARGV);
    assert_stops_after_settings(
        &line,
        &format!("settings=File:{}:agent_id=w-1", settings.display()),
    );
}

#[test]
fn a_different_command_line_is_reported() {
    let host = Host::new();
    let config = AgentConfig::for_build("openstack", "ubuntu-noble").unwrap();
    let (code, line, stdout) = host.run(&config, &["-P", "", "-C", "/var/vcap/bosh/agent.json"]);
    assert_eq!(code, 1);
    assert_eq!(
        line,
        "STANDIN-AGENT FAIL argv: got '-P  -C /var/vcap/bosh/agent.json', expected '-P ubuntu -C /var/vcap/bosh/agent.json' |"
    );
    assert_eq!(
        stdout.trim_end(),
        line,
        "the line also goes to stdout (the journal)"
    );
}
