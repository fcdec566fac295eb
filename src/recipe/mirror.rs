//! Which archive to bootstrap from. Precedence: `--mirror`, then the BUILD_TIME snapshot, then
//! the OS definition's mirror, and for a `null` mirror the one the host's apt sources use.

use super::os::OsDefinition;
use anyhow::{bail, Result};
use std::path::Path;

/// Where the host's apt configuration lives.
pub const HOST_APT_DIR: &str = "/etc/apt";

/// The archive URL for this build (no trailing slash).
pub fn choose(
    os: &OsDefinition,
    mirror_override: Option<&str>,
    build_time: Option<&str>,
    etc_apt: &Path,
) -> Result<String> {
    if let Some(m) = mirror_override {
        return check_url(m, "--mirror");
    }
    if let Some(t) = build_time {
        check_build_time(t)?;
        let Some(pattern) = &os.snapshot_mirror else {
            bail!(
                "BUILD_TIME is set but OS `{}` has no snapshot_mirror",
                os.name
            );
        };
        return Ok(pattern.replace("{timestamp}", t));
    }
    archive_mirror(os, etc_apt)
}

/// The mirror without any snapshot: the OS definition's, else the host's. This is also what
/// the finished image's apt sources point at.
pub fn archive_mirror(os: &OsDefinition, etc_apt: &Path) -> Result<String> {
    match &os.mirror {
        Some(m) => check_url(m, &format!("OS `{}` mirror", os.name)),
        None => host_apt_mirror(etc_apt, &os.suite),
    }
}

/// BUILD_TIME must look like `20250520T000000Z` (`%Y%m%dT%H%M%SZ`, as the official CI writes it).
pub fn check_build_time(t: &str) -> Result<()> {
    let b = t.as_bytes();
    let ok = b.len() == 16
        && b[..8].iter().all(u8::is_ascii_digit)
        && b[8] == b'T'
        && b[9..15].iter().all(u8::is_ascii_digit)
        && b[15] == b'Z';
    if !ok {
        bail!("BUILD_TIME `{t}`: expected a UTC timestamp like 20250520T000000Z");
    }
    Ok(())
}

fn check_url(url: &str, what: &str) -> Result<String> {
    if !(url.starts_with("http://") || url.starts_with("https://") || url.starts_with("file:/")) {
        bail!("{what} `{url}`: expected an http://, https:// or file:/ URL");
    }
    Ok(url.trim_end_matches('/').to_string())
}

/// The mirror the host's apt sources use for `suite`: first the deb822 files
/// `<etc_apt>/sources.list.d/*.sources`, then one-line `sources.list` files. A source listing
/// the suite itself wins; otherwise the first `deb` source that is not a `-security` suite.
pub fn host_apt_mirror(etc_apt: &Path, suite: &str) -> Result<String> {
    let mut sources: Vec<(String, Vec<String>)> = Vec::new(); // (uri, suites)
    let dir = etc_apt.join("sources.list.d");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.sort();
    for f in files
        .iter()
        .filter(|f| f.extension().is_some_and(|e| e == "sources"))
    {
        sources.extend(parse_deb822(
            &std::fs::read_to_string(f).unwrap_or_default(),
        ));
    }
    let mut lists = vec![etc_apt.join("sources.list")];
    lists.extend(
        files
            .iter()
            .filter(|f| f.extension().is_some_and(|e| e == "list"))
            .cloned(),
    );
    for f in lists {
        sources.extend(parse_one_line(
            &std::fs::read_to_string(f).unwrap_or_default(),
        ));
    }
    let exact = sources
        .iter()
        .find(|(_, suites)| suites.iter().any(|s| s == suite));
    let any = || {
        sources
            .iter()
            .find(|(_, suites)| !suites.iter().any(|s| s.ends_with("-security")))
    };
    match exact.or_else(any) {
        Some((uri, _)) => check_url(uri, &format!("host apt source in {}", etc_apt.display())),
        None => bail!(
            "no Debian mirror found in {0}/sources.list.d/*.sources or {0}/sources.list; pass --mirror",
            etc_apt.display()
        ),
    }
}

/// `Types: deb` stanzas of a deb822 file: (first URI, suites).
fn parse_deb822(text: &str) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    for stanza in text.split("\n\n") {
        let field = |name: &str| {
            stanza.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                (!l.starts_with('#') && k.trim().eq_ignore_ascii_case(name))
                    .then(|| v.trim().to_string())
            })
        };
        let deb = field("Types").is_some_and(|t| t.split_whitespace().any(|t| t == "deb"));
        let enabled = field("Enabled").is_none_or(|e| e != "no");
        if let (true, true, Some(uris)) = (deb, enabled, field("URIs")) {
            if let Some(uri) = uris.split_whitespace().next() {
                let suites = field("Suites").unwrap_or_default();
                out.push((
                    uri.to_string(),
                    suites.split_whitespace().map(String::from).collect(),
                ));
            }
        }
    }
    out
}

/// `deb [options] URI suite components...` lines.
fn parse_one_line(text: &str) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    for line in text.lines().map(str::trim) {
        let Some(rest) = line.strip_prefix("deb ") else {
            continue;
        };
        let rest = rest.trim_start();
        let rest = match rest.strip_prefix('[') {
            Some(r) => r.split_once(']').map_or("", |(_, r)| r),
            None => rest,
        };
        let mut words = rest.split_whitespace();
        if let (Some(uri), Some(suite)) = (words.next(), words.next()) {
            out.push((uri.to_string(), vec![suite.to_string()]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apt_dir(sources: &str, list: &str) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("sources.list.d")).unwrap();
        std::fs::write(d.path().join("sources.list.d/debian.sources"), sources).unwrap();
        std::fs::write(d.path().join("sources.list"), list).unwrap();
        d
    }

    #[test]
    fn deb822_picks_the_stanza_with_the_suite() {
        let d = apt_dir(
            "Types: deb\nURIs: http://sec.example/debian-security\nSuites: bookworm-security\n\n\
             Types: deb\n# comment: x\nURIs: http://mirror.example/debian/\nSuites: bookworm bookworm-updates\n",
            "",
        );
        assert_eq!(
            host_apt_mirror(d.path(), "bookworm").unwrap(),
            "http://mirror.example/debian"
        );
    }

    #[test]
    fn one_line_sources_list_with_options() {
        let d = apt_dir(
            "",
            "# x\ndeb [arch=amd64 signed-by=/k.gpg] http://m.example/debian bookworm main\n",
        );
        assert_eq!(
            host_apt_mirror(d.path(), "bookworm").unwrap(),
            "http://m.example/debian"
        );
    }

    #[test]
    fn no_source_is_a_clear_error() {
        let d = apt_dir("", "");
        let e = host_apt_mirror(d.path(), "bookworm")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("no Debian mirror found in "), "{e}");
        assert!(e.ends_with("pass --mirror"), "{e}");
    }

    #[test]
    fn build_time_format() {
        check_build_time("20250520T000000Z").unwrap();
        assert_eq!(
            check_build_time("2025-05-20").unwrap_err().to_string(),
            "BUILD_TIME `2025-05-20`: expected a UTC timestamp like 20250520T000000Z"
        );
    }
}
