//! Chroot sessions on a tiny root made of host binaries: clean environment with proxies passed
//! through, a private PID namespace, mounts that exist only inside the command, and a private
//! copy of the host's resolv.conf. Needs root; no network.

#[path = "common/rootfs.rs"]
mod rootfs;

use stemcell::rootfs::chroot::Session;

#[test]
fn session_is_private_and_clean() {
    let tmp = tempfile::tempdir_in("/var/tmp").unwrap();
    let root = tmp.path().join("root");
    rootfs::tiny_root(&root, &["dash", "cat", "ls", "env", "sleep"]);
    // SAFETY (edition 2021: safe fn): only this test reads these variables.
    std::env::set_var("no_proxy", "stemcell-test.invalid");
    std::env::set_var("SECRET_TOKEN", "must-not-pass");
    let session = Session::open(&root).unwrap();

    let out = session
        .output("echo pid=$$; env; ls /proc/1/ >/dev/null; ls /dev")
        .unwrap();
    assert_eq!(out.status, 0, "{}", out.output);
    assert!(
        out.output.contains("pid=1\n"),
        "not PID 1 of a new namespace: {}",
        out.output
    );
    assert!(
        out.output.contains("no_proxy=stemcell-test.invalid"),
        "{}",
        out.output
    );
    assert!(
        !out.output.contains("SECRET_TOKEN"),
        "environment not clean: {}",
        out.output
    );
    assert!(
        out.output.contains("LC_ALL=C") && out.output.contains("DEBIAN_FRONTEND=noninteractive")
    );
    // zstd (mkinitramfs's compressor) on every core.
    let cores = std::thread::available_parallelism().unwrap().get();
    assert!(
        out.output.contains(&format!("ZSTD_NBTHREADS={cores}\n")),
        "{}",
        out.output
    );
    assert!(
        out.output.contains("null") && out.output.contains("pts"),
        "{}",
        out.output
    );

    // The host's resolv.conf is seen, but writes go to a private copy.
    let host_resolv = std::fs::read("/etc/resolv.conf").unwrap_or_default();
    let out = session
        .output("cat /etc/resolv.conf; echo nameserver 192.0.2.1 > /etc/resolv.conf")
        .unwrap();
    assert_eq!(out.status, 0, "{}", out.output);
    assert_eq!(out.output.as_bytes(), &host_resolv[..]);
    assert_eq!(
        std::fs::read("/etc/resolv.conf").unwrap_or_default(),
        host_resolv,
        "host resolv.conf changed"
    );
    assert_eq!(
        std::fs::read(root.join("etc/resolv.conf")).unwrap(),
        b"",
        "image resolv.conf changed"
    );

    // A background process and the mounts die with the command.
    let out = session.output("sleep 1000 & echo started").unwrap();
    assert_eq!(out.status, 0);
    assert_eq!(rootfs::mounts_under(tmp.path()), Vec::<String>::new());
    assert_eq!(rootfs::processes_under(tmp.path()), Vec::<String>::new());
    assert!(
        std::fs::read_dir(root.join("proc"))
            .unwrap()
            .next()
            .is_none(),
        "/proc left mounted"
    );

    // Exit status and streaming output.
    let mut log = Vec::new();
    let status = session
        .run("echo one; echo two >&2; exit 7", None, &mut log)
        .unwrap();
    assert_eq!(status, 7);
    assert_eq!(String::from_utf8_lossy(&log), "one\ntwo\n");
    let mut log = Vec::new();
    session
        .run_checked("cat > /tmp/in", Some(b"data"), &mut log)
        .unwrap();
    assert_eq!(std::fs::read(root.join("tmp/in")).unwrap(), b"data");
    let err = session
        .run_checked("exit 3", None, &mut log)
        .unwrap_err()
        .to_string();
    assert_eq!(err, "exit status 3");
}

#[test]
fn not_a_root_filesystem() {
    let tmp = tempfile::tempdir().unwrap();
    let err = Session::open(tmp.path()).err().unwrap().to_string();
    assert!(err.ends_with("not a root filesystem (no /bin/sh)"), "{err}");
}

/// An image whose resolv.conf is systemd-resolved's relative link still resolves names during
/// the build: the host's file appears at the link's target on the command's private /run, and
/// nothing is written into the image.
#[test]
fn relative_resolv_conf_link_gets_the_host_file_on_private_run() {
    let tmp = tempfile::tempdir_in("/var/tmp").unwrap();
    let root = tmp.path().join("root");
    rootfs::tiny_root(&root, &["dash", "cat"]);
    std::fs::create_dir_all(root.join("run")).unwrap();
    let _ = std::fs::remove_file(root.join("etc/resolv.conf"));
    std::os::unix::fs::symlink(
        "../run/systemd/resolve/stub-resolv.conf",
        root.join("etc/resolv.conf"),
    )
    .unwrap();
    let session = Session::open(&root).unwrap();
    let out = session.output("cat /etc/resolv.conf").unwrap();
    assert_eq!(out.status, 0, "{}", out.output);
    assert_eq!(
        out.output.as_bytes(),
        &std::fs::read("/etc/resolv.conf").unwrap_or_default()[..]
    );
    assert!(
        !root.join("run/systemd").exists(),
        "the copy must stay on the private /run"
    );
}
