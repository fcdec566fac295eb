//! The agent's HTTPS message bus, as the BOSH CLI talks to it during create-env: POST
//! `/agent` with basic auth and a JSON `{"method", "arguments", "reply_to"}`, answered with
//! `{"value": ...}` or `{"exception": ...}` (cloudfoundry/bosh-agent mbus/https_handler.go,
//! https_dispatcher.go). The client is curl, trusting only the boot's throwaway CA.

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::Command;

pub struct Mbus {
    pub port: u16,
    pub user: String,
    pub password: String,
    pub ca_file: PathBuf,
}

impl Mbus {
    /// Calls `method`; an error when the agent cannot be reached or answers an exception.
    pub fn call(&self, method: &str, timeout_s: u32) -> Result<Value> {
        let body = json!({ "method": method, "arguments": [], "reply_to": "stemcell-boot" });
        let out = Command::new("curl")
            .args([
                "-sS",
                "--fail-with-body",
                "--max-time",
                &timeout_s.to_string(),
                "--cacert",
            ])
            .arg(&self.ca_file)
            // The password stays off the command line: curl reads `user` from stdin config.
            .args([
                "-K",
                "-",
                "-H",
                "Content-Type: application/json",
                "--data-binary",
            ])
            .arg(body.to_string())
            .arg(format!("https://127.0.0.1:{}/agent", self.port))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut child| {
                use std::io::Write;
                let config = format!("user = \"{}:{}\"\n", self.user, self.password);
                child
                    .stdin
                    .take()
                    .expect("piped")
                    .write_all(config.as_bytes())?;
                child.wait_with_output()
            })
            .context("cannot run curl")?;
        if !out.status.success() {
            bail!("{}", String::from_utf8_lossy(&out.stderr).trim());
        }
        let reply: Value = serde_json::from_slice(&out.stdout).with_context(|| {
            format!(
                "agent reply is not JSON: {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })?;
        if let Some(e) = reply.get("exception") {
            bail!("agent answered an exception: {e}");
        }
        Ok(reply["value"].clone())
    }
}
