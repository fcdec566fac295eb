//! `config_lines:` set `Key value` lines (sshd_config, login.defs style). For each key, the
//! first active line is replaced, else the first commented one (`#Key ...`), else a line is
//! appended; further active lines for the key are dropped. Applying it twice changes nothing.

use super::{image_path, ActionContext};
use crate::recipe::stage::ConfigLinesAction;
use anyhow::{bail, Result};

pub fn apply(a: &ConfigLinesAction, ctx: &mut ActionContext) -> Result<()> {
    let path = image_path(&a.path)?;
    let Some(existing) = ctx.read(path)? else {
        bail!("config_lines {path}: file not found in the image");
    };
    let text = String::from_utf8_lossy(&existing).into_owned();
    let sep = a.separator.as_deref().unwrap_or(" ");
    let mut set = Vec::new();
    for (k, v) in &a.set {
        set.push((k.clone(), ctx.render(&format!("{path} {k}"), v)?));
    }
    let new = set_lines(&text, &set, sep);
    if new != text {
        // `cat >` into the existing file keeps its mode and owner.
        let q = crate::rootfs::chroot::sh_quote(path);
        ctx.sh(
            &format!("config_lines {path}: cannot write"),
            &format!("cat > {q}"),
            Some(new.as_bytes()),
        )?;
    }
    Ok(())
}

/// The key a line sets, and whether the line is commented out.
fn line_key<'a>(line: &'a str, sep: &str) -> Option<(&'a str, bool)> {
    let t = line.trim_start();
    let (t, commented) = match t.strip_prefix('#') {
        Some(rest) => (rest.trim_start(), true),
        None => (t, false),
    };
    let sep_trim = sep.trim();
    let end = t
        .find(|c: char| c.is_whitespace() || (!sep_trim.is_empty() && sep_trim.starts_with(c)))
        .unwrap_or(t.len());
    if end == 0 {
        return None;
    }
    Some((&t[..end], commented))
}

/// Pure text edit behind [`apply`].
pub fn set_lines(text: &str, set: &[(String, String)], sep: &str) -> String {
    let mut lines: Vec<Option<String>> = text.lines().map(|l| Some(l.to_string())).collect();
    for (key, value) in set {
        let wanted = format!("{key}{sep}{value}");
        let matching = |commented: bool| {
            lines.iter().position(|l| {
                l.as_deref().and_then(|l| line_key(l, sep)) == Some((key.as_str(), commented))
            })
        };
        match matching(false).or_else(|| matching(true)) {
            Some(i) => {
                lines[i] = Some(wanted);
                for (j, l) in lines.iter_mut().enumerate() {
                    if j != i
                        && l.as_deref().and_then(|l| line_key(l, sep))
                            == Some((key.as_str(), false))
                    {
                        *l = None;
                    }
                }
            }
            None => lines.push(Some(wanted)),
        }
    }
    let mut out: String = lines.into_iter().flatten().collect::<Vec<_>>().join("\n");
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::set_lines;

    #[test]
    fn replaces_commented_or_active_lines_and_appends() {
        let text =
            "#PermitRootLogin prohibit-password\nPort 22\nX11Forwarding yes\nX11Forwarding no\n";
        let set = vec![
            ("PermitRootLogin".to_string(), "no".to_string()),
            ("X11Forwarding".to_string(), "no".to_string()),
            ("UseDNS".to_string(), "no".to_string()),
        ];
        let once = set_lines(text, &set, " ");
        assert_eq!(
            once,
            "PermitRootLogin no\nPort 22\nX11Forwarding no\nUseDNS no\n"
        );
        assert_eq!(set_lines(&once, &set, " "), once, "idempotent");
        assert_eq!(
            set_lines("A=1\n", &[("A".into(), "2".into())], "="),
            "A=2\n"
        );
    }
}
