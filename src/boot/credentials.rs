//! Throwaway secrets for one boot: a CA and the agent's mbus certificate (RSA: the agent's
//! TLS settings allow only ECDHE-RSA suites on TLS 1.2, cloudfoundry/bosh-agent
//! mbus/https_dispatcher.go `tlsconfig.WithInternalServiceDefaults`), mbus credentials, a vcap
//! password (as a SHA-512 crypt hash, the form `env.bosh.password` takes) and an SSH key.
//! Made with openssl and ssh-keygen in the boot's temporary directory.

use super::tools::run;
use anyhow::Result;
use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Credentials {
    /// PEM of the CA that signed the mbus certificate (the client trusts only it).
    pub ca_pem: String,
    pub ca_file: PathBuf,
    pub mbus_cert_pem: String,
    pub mbus_key_pem: String,
    pub mbus_user: String,
    pub mbus_password: String,
    pub vcap_password: String,
    pub vcap_password_hash: String,
    pub ssh_key: PathBuf,
    pub ssh_public_key: String,
}

/// `n` random bytes as hex.
pub fn random_hex(n: usize) -> String {
    let mut b = vec![0u8; n];
    getrandom::fill(&mut b).expect("the OS random source");
    hex::encode(b)
}

/// Makes every secret in `dir`. `guest_ip` goes into the certificate beside 127.0.0.1 (the
/// forwarded port the client dials).
pub fn make(dir: &Path, guest_ip: &str) -> Result<Credentials> {
    let f = |n: &str| dir.join(n);
    let openssl = || {
        let mut c = Command::new("openssl");
        c.current_dir(dir);
        c
    };
    run(openssl().args([
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=stemcell boot throwaway CA",
    ]))?;
    run(openssl().args([
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "mbus.key",
        "-out",
        "mbus.csr",
        "-subj",
        "/CN=bosh-agent-mbus",
    ]))?;
    std::fs::write(
        f("mbus.ext"),
        format!("subjectAltName=IP:127.0.0.1,IP:{guest_ip}\nextendedKeyUsage=serverAuth\n"),
    )?;
    run(openssl().args([
        "x509",
        "-req",
        "-in",
        "mbus.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "mbus.ext",
        "-out",
        "mbus.pem",
    ]))?;
    let vcap_password = random_hex(12);
    let hash = run(openssl().args(["passwd", "-6", &vcap_password]))?;
    run(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "stemcell-boot", "-f"])
        .arg(f("ssh_key")))?;
    let read = |n: &str| std::fs::read_to_string(f(n));
    Ok(Credentials {
        ca_pem: read("ca.pem")?,
        ca_file: f("ca.pem"),
        mbus_cert_pem: read("mbus.pem")?,
        mbus_key_pem: read("mbus.key")?,
        mbus_user: "mbus".into(),
        mbus_password: random_hex(16),
        vcap_password,
        vcap_password_hash: String::from_utf8_lossy(&hash).trim().to_string(),
        ssh_key: f("ssh_key"),
        ssh_public_key: read("ssh_key.pub")?.trim().to_string(),
    })
}
