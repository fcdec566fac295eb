//! `stemcell test-image` end to end on a tiny root filesystem built from the host's dash and
//! cat: checks run inside it through the chroot session (needs root: unshare + chroot), a
//! tarball is extracted with owners, modes and device nodes intact, and hostile tarballs are
//! refused with the member named and nothing left behind.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use stemcell::imagetest::{self, Verdict};

/// A root filesystem with /bin/sh, /bin/cat, their libraries, os-release and a hostname.
fn fixture_root(dir: &Path) -> PathBuf {
    let root = dir.join("root");
    for (host, inside) in [
        ("/usr/bin/dash", "bin/sh"),
        ("/usr/bin/cat", "bin/cat"),
        (
            "/lib/x86_64-linux-gnu/libc.so.6",
            "lib/x86_64-linux-gnu/libc.so.6",
        ),
        ("/lib64/ld-linux-x86-64.so.2", "lib64/ld-linux-x86-64.so.2"),
    ] {
        let target = root.join(inside);
        fs::create_dir_all(target.parent().unwrap()).unwrap();
        fs::copy(host, &target).unwrap();
    }
    // The mount points every real root has (the chroot session mounts /proc, /sys, /dev, /run).
    for d in ["proc", "sys", "dev", "run"] {
        fs::create_dir_all(root.join(d)).unwrap();
    }
    fs::create_dir_all(root.join("etc")).unwrap();
    fs::write(
        root.join("etc/os-release"),
        "ID=debian\nVERSION_CODENAME=bookworm\n",
    )
    .unwrap();
    fs::write(root.join("etc/hostname"), "fixture\n").unwrap();
    root
}

/// A project directory holding only `checks/test.yaml`.
fn project(dir: &Path, checks: &str) -> PathBuf {
    let project = dir.join("project");
    fs::create_dir_all(project.join("checks")).unwrap();
    fs::write(project.join("checks/test.yaml"), checks).unwrap();
    project
}

const CHECKS: &str = r#"
checks:
  - id: "1"
    description: os-release is a file
    script: test -f /etc/os-release
  - id: "2"
    description: the hostname
    script: cat /etc/hostname
    expect: { output: fixture }
  - id: "3"
    description: a check for Ubuntu only
    when: { os_family: [ubuntu] }
    script: exit 1
  - id: "4"
    description: a file that must be absent
    script: test -e /etc/shadow
    expect: { status: 1 }
"#;

#[test]
fn checks_run_inside_a_root_directory() {
    let dir = tempfile::tempdir().unwrap();
    let root = fixture_root(dir.path());
    let project = project(dir.path(), CHECKS);
    let report = imagetest::test_image(&root, &project).unwrap();
    assert_eq!(
        (report.passed(), report.failed(), report.skipped()),
        (3, 0, 1)
    );
    assert_eq!(report.os.as_ref().unwrap().name, "debian-bookworm");
    let text = report.render();
    assert!(
        text.starts_with("test-image: debian-bookworm OS image\n"),
        "{text}"
    );
    assert!(text.contains("PASS 2 the hostname\n"), "{text}");
    assert!(text.contains("SKIP 3 a check for Ubuntu only\n"), "{text}");
    assert!(
        text.ends_with("\n3 passed, 0 failed, 1 skipped\n"),
        "{text}"
    );
    let json = report.to_json();
    assert_eq!(
        (
            json["passed"].as_u64(),
            json["failed"].as_u64(),
            json["skipped"].as_u64()
        ),
        (Some(3), Some(0), Some(1))
    );
    assert_eq!(json["checks"][2]["verdict"], "skip");
}

/// Tars `root` with `./` member names, adding a setuid file owned by uid 1234 and /dev/null.
fn tarball_of(root: &Path, out: &Path) {
    let file = fs::File::create(out).unwrap();
    let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
        file,
        flate2::Compression::fast(),
    ));
    builder.follow_symlinks(false);
    builder.append_dir_all(".", root).unwrap();
    let mut header = tar::Header::new_gnu();
    header.set_path("./bin/setuid-tool").unwrap();
    header.set_size(4);
    header.set_mode(0o4755);
    header.set_uid(1234);
    header.set_gid(0);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_cksum();
    builder.append(&header, &b"tool"[..]).unwrap();
    let mut header = tar::Header::new_gnu();
    header.set_path("./dev/null").unwrap();
    header.set_size(0);
    header.set_mode(0o666);
    header.set_uid(0);
    header.set_gid(0);
    header.set_entry_type(tar::EntryType::Char);
    header.set_device_major(1).unwrap();
    header.set_device_minor(3).unwrap();
    header.set_cksum();
    builder.append(&header, std::io::empty()).unwrap();
    builder.into_inner().unwrap().finish().unwrap();
}

#[test]
fn a_tarball_is_extracted_faithfully_checked_and_removed() {
    let dir = tempfile::tempdir().unwrap();
    let root = fixture_root(dir.path());
    let tarball = dir.path().join("os-image.tgz");
    tarball_of(&root, &tarball);
    let scratch = dir.path().join("scratch");
    fs::create_dir(&scratch).unwrap();
    let checks = format!(
        "{CHECKS}{}",
        r#"
  - id: "5"
    description: setuid bit and device node survive extraction
    script: test -u /bin/setuid-tool && test -c /dev/null
  - id: "6"
    description: a failing check
    script: echo "something is wrong"; exit 3
"#
    );
    let project = project(dir.path(), &checks);
    let err = imagetest::test_image_in(&tarball, &project, &scratch, false).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("{}: 1 of 5 image checks failed", tarball.display())
    );
    assert_eq!(
        fs::read_dir(&scratch).unwrap().count(),
        0,
        "the extracted image is removed"
    );

    // The extraction itself, kept this time, preserves the owner and mode.
    let out = dir.path().join("out");
    fs::create_dir(&out).unwrap();
    imagetest::extract::extract(&tarball, &out).unwrap();
    let meta = fs::metadata(out.join("bin/setuid-tool")).unwrap();
    assert_eq!(
        (meta.uid(), meta.permissions().mode() & 0o7777),
        (1234, 0o4755)
    );
}

/// A tarball with one hostile member written as raw header bytes (the tar crate refuses to
/// build such names itself).
fn hostile_tarball(out: &Path, name: &[u8], kind: tar::EntryType) {
    let mut header = tar::Header::new_gnu();
    header.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name);
    header.set_size(if kind == tar::EntryType::Regular {
        4
    } else {
        0
    });
    header.set_mode(0o644);
    header.set_entry_type(kind);
    header.set_cksum();
    let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
        fs::File::create(out).unwrap(),
        flate2::Compression::fast(),
    ));
    let data: &[u8] = if kind == tar::EntryType::Regular {
        b"evil"
    } else {
        b""
    };
    builder.append(&header, data).unwrap();
    builder.into_inner().unwrap().finish().unwrap();
}

#[test]
fn hostile_tarballs_are_refused_and_leave_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let project = project(dir.path(), CHECKS);
    let scratch = dir.path().join("scratch");
    fs::create_dir(&scratch).unwrap();
    for (name, kind, problem) in [
        (&b"../evil"[..], tar::EntryType::Regular, "path with `..`"),
        (
            &b"./etc/../../evil"[..],
            tar::EntryType::Regular,
            "path with `..`",
        ),
        (&b"/evil"[..], tar::EntryType::Regular, "absolute path"),
        (
            &b"./etc/disk"[..],
            tar::EntryType::Block,
            "device file outside /dev",
        ),
    ] {
        let tarball = dir.path().join("hostile.tgz");
        hostile_tarball(&tarball, name, kind);
        let err = imagetest::test_image_in(&tarball, &project, &scratch, false).unwrap_err();
        let member = String::from_utf8_lossy(name);
        let chain = format!("{err:#}");
        assert!(
            chain.starts_with(&format!("{}: member {member}", tarball.display())),
            "{chain}"
        );
        assert!(chain.contains(problem), "{chain}");
        assert_eq!(
            fs::read_dir(&scratch).unwrap().count(),
            0,
            "{member}: scratch left behind"
        );
    }
    assert!(!dir.path().join("evil").exists() && !Path::new("/evil").exists());
}

#[test]
fn a_stemcell_without_a_disk_is_refused_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let project = project(dir.path(), CHECKS);
    fs::create_dir_all(project.join("checks/stemcell")).unwrap();
    fs::write(project.join("checks/stemcell/s.yaml"), CHECKS).unwrap();
    let stemcell = dir.path().join("bosh-stemcell.tgz");
    let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
        fs::File::create(&stemcell).unwrap(),
        flate2::Compression::fast(),
    ));
    let manifest = b"name: bosh-openstack-kvm-debian-bookworm-go_agent\ncloud_properties:\n  infrastructure: openstack\n";
    for (name, data) in [("stemcell.MF", &manifest[..]), ("image", &b""[..])] {
        let mut header = tar::Header::new_gnu();
        header.set_path(name).unwrap();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append(&header, data).unwrap();
    }
    builder.into_inner().unwrap().finish().unwrap();
    let scratch = dir.path().join("scratch");
    fs::create_dir(&scratch).unwrap();
    let err = imagetest::test_image_in(&stemcell, &project, &scratch, false).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{}: a light stemcell (empty image): no disk to test",
            stemcell.display()
        )
    );
    assert_eq!(
        fs::read_dir(&scratch).unwrap().count(),
        0,
        "nothing left behind"
    );
}

#[test]
fn the_command_names_a_missing_image_in_one_line() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_stemcell"))
        .args(["test-image", "/nonexistent/os-image.tgz"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "stemcell: /nonexistent/os-image.tgz: no such file or directory\n"
    );
}

#[test]
fn failing_checks_show_the_reason_and_output() {
    let dir = tempfile::tempdir().unwrap();
    let root = fixture_root(dir.path());
    let project = project(dir.path(), "checks:\n  - {id: '9', description: wrong hostname, script: cat /etc/hostname, expect: {output: other}}\n");
    let err = imagetest::test_image(&root, &project).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("{}: 1 of 1 image checks failed", root.display())
    );
    let checks = imagetest::load_checks(&project).unwrap();
    let report = imagetest::run_checks(&root, &checks).unwrap();
    assert!(
        matches!(&report.results[0].verdict, Verdict::Fail { reason, .. } if reason == "output \"fixture\", expected \"other\"")
    );
    assert!(report.render().contains(
        "FAIL 9 wrong hostname: output \"fixture\", expected \"other\"\n          | fixture\n"
    ));
}

/// A member written through a link that leaves the root must not land outside it.
#[test]
fn members_are_never_written_through_a_link_out_of_the_root() {
    let dir = tempfile::tempdir().unwrap();
    let outside = dir.path().join("outside");
    fs::create_dir(&outside).unwrap();
    let tarball = dir.path().join("escape.tgz");
    let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
        fs::File::create(&tarball).unwrap(),
        flate2::Compression::fast(),
    ));
    let mut link = tar::Header::new_gnu();
    link.set_entry_type(tar::EntryType::Symlink);
    link.set_path("./escape").unwrap();
    link.set_link_name(&outside).unwrap();
    link.set_size(0);
    link.set_mode(0o777);
    link.set_uid(0);
    link.set_gid(0);
    link.set_cksum();
    builder.append(&link, std::io::empty()).unwrap();
    let mut file = tar::Header::new_gnu();
    file.set_path("./escape/pwned").unwrap();
    file.set_size(4);
    file.set_mode(0o644);
    file.set_uid(0);
    file.set_gid(0);
    file.set_cksum();
    builder.append(&file, &b"evil"[..]).unwrap();
    builder.into_inner().unwrap().finish().unwrap();
    let dest = dir.path().join("dest");
    fs::create_dir(&dest).unwrap();
    let _ = imagetest::extract::extract(&tarball, &dest);
    assert_eq!(
        fs::read_dir(&outside).unwrap().count(),
        0,
        "a member was written outside the root"
    );
}
