//! The HTTP metadata services, served by this tool to the guest. QEMU's user network forwards
//! each guest connection to the service address (`guestfwd=tcp:IP:PORT-cmd:...`) to a fresh
//! `stemcell boot-metadata SITE.json` process whose stdin and stdout are the connection
//! (libslirp `fork_exec`): it answers one request and exits. Nothing listens on the host.
//!
//! What each service must answer, from the agent's side (cloudfoundry/bosh-agent
//! infrastructure/http_metadata_service.go, instance_metadata_settings_source.go):
//! - EC2 style (CloudStack's mdproxy4cs, AWS): GET `UserDataPath` → the settings JSON;
//!   `InstanceIDPath` and `SSHKeysPath` → the id and the public key;
//! - AWS IMDSv2 (`TokenPath`): PUT the token path with `X-aws-ec2-metadata-token-ttl-seconds`
//!   → a token, then every GET carries it as `X-aws-ec2-metadata-token` (401 without it, as
//!   IMDSv2 answers);
//! - Google: GET `SettingsPath` with `Metadata-Flavor: Google` (403 without it, as GCE
//!   answers), and the reply carries the same header.

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// What one service serves; written as JSON for the per-connection process.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Site {
    /// Path → body.
    pub paths: BTreeMap<String, String>,
    pub token_path: Option<String>,
    pub token: String,
    /// Headers every request must carry (lower-case names).
    pub required_headers: BTreeMap<String, String>,
    pub reply_headers: BTreeMap<String, String>,
    /// One line per request is appended here (method, path, status).
    pub log: PathBuf,
}

pub const TOKEN_TTL_HEADER: &str = "x-aws-ec2-metadata-token-ttl-seconds";
pub const TOKEN_HEADER: &str = "x-aws-ec2-metadata-token";

/// A parsed request: method, path (no query), lower-cased headers.
#[derive(Debug, PartialEq)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub headers: BTreeMap<String, String>,
}

/// Reads one request's head (and discards its body) from `input`.
pub fn read_request(input: &mut dyn Read) -> Result<Request> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && !head.ends_with(b"\n\n") {
        if input.read(&mut byte)? == 0 {
            anyhow::bail!("connection closed before the request head ended");
        }
        head.push(byte[0]);
        if head.len() > 64 * 1024 {
            anyhow::bail!("request head too long");
        }
    }
    let text = String::from_utf8_lossy(&head);
    let mut lines = text.lines();
    let first = lines.next().unwrap_or_default();
    let mut parts = first.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let target = parts.next().unwrap_or_default();
    let path = target.split('?').next().unwrap_or_default().to_string();
    let headers: BTreeMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let length: u64 = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    std::io::copy(&mut input.take(length), &mut std::io::sink())?;
    Ok(Request {
        method,
        path,
        headers,
    })
}

/// The answer of `site` to `request`: (status, reason, body).
pub fn respond(site: &Site, request: &Request) -> (u16, &'static str, String) {
    for (name, value) in &site.required_headers {
        if request.headers.get(name) != Some(value) {
            return (
                403,
                "Forbidden",
                format!("Missing {name}: {value} header\n"),
            );
        }
    }
    if let Some(token_path) = &site.token_path {
        if request.path == *token_path {
            return match (
                request.method.as_str(),
                request.headers.get(TOKEN_TTL_HEADER),
            ) {
                ("PUT", Some(_)) => (200, "OK", site.token.clone()),
                ("PUT", None) => (400, "Bad Request", String::new()),
                _ => (405, "Method Not Allowed", String::new()),
            };
        }
        if request.headers.get(TOKEN_HEADER) != Some(&site.token) {
            return (401, "Unauthorized", String::new());
        }
    }
    if request.method != "GET" {
        return (405, "Method Not Allowed", String::new());
    }
    match site.paths.get(&request.path) {
        Some(body) => (200, "OK", body.clone()),
        None => (404, "Not Found", String::new()),
    }
}

/// Serves one connection on `input`/`output` (the per-connection process's stdin/stdout).
pub fn serve_one(site_file: &Path, input: &mut dyn Read, output: &mut dyn Write) -> Result<()> {
    let site: Site = serde_json::from_slice(
        &std::fs::read(site_file).with_context(|| site_file.display().to_string())?,
    )?;
    let request = read_request(input)?;
    let (status, reason, body) = respond(&site, &request);
    let mut head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Length: {}\r\nContent-Type: text/plain\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in &site.reply_headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    output.write_all(head.as_bytes())?;
    output.write_all(body.as_bytes())?;
    output.flush()?;
    if let Ok(mut log) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&site.log)
    {
        let _ = writeln!(log, "{} {} {status}", request.method, request.path);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site() -> Site {
        Site {
            paths: BTreeMap::from([("/latest/user-data".to_string(), "{}".to_string())]),
            token_path: Some("/latest/api/token".into()),
            token: "tok".into(),
            required_headers: BTreeMap::new(),
            reply_headers: BTreeMap::new(),
            log: PathBuf::from("/dev/null"),
        }
    }

    fn req(text: &str) -> Request {
        read_request(&mut text.replace('\n', "\r\n").as_bytes()).unwrap()
    }

    #[test]
    fn imdsv2_needs_the_token() {
        let s = site();
        let r = req("PUT /latest/api/token HTTP/1.1\nX-aws-ec2-metadata-token-ttl-seconds: 300\nContent-Length: 0\n\n");
        assert_eq!(respond(&s, &r), (200, "OK", "tok".into()));
        let r = req("GET /latest/user-data HTTP/1.1\nHost: x\n\n");
        assert_eq!(respond(&s, &r).0, 401);
        let r = req("GET /latest/user-data?x=1 HTTP/1.1\nX-AWS-EC2-Metadata-Token: tok\n\n");
        assert_eq!(respond(&s, &r), (200, "OK", "{}".into()));
        let r = req("GET /latest/other HTTP/1.1\nX-aws-ec2-metadata-token: tok\n\n");
        assert_eq!(respond(&s, &r).0, 404);
    }

    #[test]
    fn google_needs_metadata_flavor() {
        let mut s = site();
        s.token_path = None;
        s.required_headers
            .insert("metadata-flavor".into(), "Google".into());
        assert_eq!(
            respond(&s, &req("GET /latest/user-data HTTP/1.1\n\n")).0,
            403
        );
        assert_eq!(
            respond(
                &s,
                &req("GET /latest/user-data HTTP/1.1\nMetadata-Flavor: Google\n\n")
            )
            .0,
            200
        );
    }
}
