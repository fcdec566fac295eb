//! One file per [`Action`] variant. Every action is idempotent where the operation allows it:
//! running a stage twice on its own result changes nothing and is not an error.

mod apt;
mod config_lines;
mod directory;
mod file;
mod group;
mod remove;
mod run;
mod service;
mod symlink;
mod template;
mod user;

pub use config_lines::set_lines;

use crate::recipe::plan::Plan;
use crate::recipe::stage::Action;
use crate::rootfs::chroot::{sh_quote, Session};
use anyhow::{bail, Context, Result};
use std::io::Write;

/// What an action needs: the chroot, the plan (variables, assets) and the stage's log.
pub struct ActionContext<'a> {
    pub session: &'a Session,
    pub plan: &'a Plan,
    pub log: &'a mut dyn Write,
}

impl ActionContext<'_> {
    /// Renders a Tera template string with the plan's variables.
    pub fn render(&self, what: &str, text: &str) -> Result<String> {
        tera::Tera::one_off(text, &self.plan.vars, false).map_err(|e| {
            let mut msg = e.to_string();
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                msg = format!("{msg}: {s}");
                src = s.source();
            }
            anyhow::anyhow!("{what}: cannot render template: {msg}")
        })
    }

    /// Runs a script in the chroot; a failure is an error naming `what`.
    pub fn sh(&mut self, what: &str, script: &str, stdin: Option<&[u8]>) -> Result<()> {
        let _ = writeln!(self.log, "+ {}", script.lines().next().unwrap_or(""));
        self.session
            .run_checked(script, stdin, self.log)
            .with_context(|| what.to_string())
    }

    /// Reads a file of the image (None when absent).
    pub fn read(&mut self, path: &str) -> Result<Option<Vec<u8>>> {
        let q = sh_quote(path);
        let out = self.session.output(&format!(
            "if [ -f {q} ]; then cat {q}; else echo __ABSENT__ >&2; exit 3; fi"
        ))?;
        match out.status {
            0 => Ok(Some(out.output.into_bytes())),
            3 if out.output.trim() == "__ABSENT__" => Ok(None),
            s => bail!(
                "{path}: cannot read ({})",
                crate::rootfs::chroot::describe_status(s)
            ),
        }
    }

    /// Writes `content` to `path` in the image with mode and ownership, creating parent
    /// directories.
    pub fn write(
        &mut self,
        path: &str,
        content: &[u8],
        mode: &str,
        owner: &str,
        group: &str,
        append: bool,
    ) -> Result<()> {
        let q = sh_quote(path);
        let redirect = if append { ">>" } else { ">" };
        let script = format!(
            "mkdir -p \"$(dirname {q})\"\ncat {redirect} {q}\nchown {}:{} {q}\nchmod {} {q}",
            sh_quote(owner),
            sh_quote(group),
            sh_quote(mode)
        );
        self.sh(&format!("{path}: cannot write"), &script, Some(content))
    }
}

/// Runs one action.
pub fn apply(action: &Action, ctx: &mut ActionContext) -> Result<()> {
    match action {
        Action::Apt(a) => apt::apply(a, ctx),
        Action::File(a) => file::apply(a, ctx),
        Action::Template(a) => template::apply(a, ctx),
        Action::Directory(a) => directory::apply(a, ctx),
        Action::Symlink(a) => symlink::apply(a, ctx),
        Action::Remove(a) => remove::apply(a, ctx),
        Action::Group(a) => group::apply(a, ctx),
        Action::User(a) => user::apply(a, ctx),
        Action::Service(a) => service::apply(a, ctx),
        Action::ConfigLines(a) => config_lines::apply(a, ctx),
        Action::Run(a) => run::apply(a, ctx),
    }
}

/// A validated octal mode string ("0644" by default).
pub fn mode(m: &Option<String>, default: &str) -> Result<String> {
    let m = m.clone().unwrap_or_else(|| default.to_string());
    if m.is_empty() || m.len() > 5 || !m.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        bail!("mode {m:?}: expected an octal string such as \"0644\"");
    }
    Ok(m)
}

/// An absolute path in the image.
pub fn image_path(p: &str) -> Result<&str> {
    if !p.starts_with('/') || p.split('/').any(|c| c == "..") {
        bail!("path {p:?}: expected an absolute path inside the image without '..'");
    }
    Ok(p)
}
