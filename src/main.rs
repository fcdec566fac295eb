use clap::FromArgMatches;

mod cli;

fn main() {
    let args =
        cli::Cli::from_arg_matches(&cli::command().get_matches()).unwrap_or_else(|e| e.exit());
    if let Err(err) = cli::run(args) {
        eprintln!("stemcell: {}", one_line(&format!("{err:#}")));
        std::process::exit(1);
    }
}

/// An error is one line: the file or stage, and the problem. A message that quotes a tool's
/// output or a file's bytes could break that (or send control characters to the terminal), so
/// line breaks become "; " and other control characters spaces.
fn one_line(message: &str) -> String {
    let lines: Vec<&str> = message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    lines
        .join("; ")
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn errors_are_printed_on_one_line() {
        assert_eq!(
            super::one_line("disk.raw: mke2fs failed"),
            "disk.raw: mke2fs failed"
        );
        assert_eq!(
            super::one_line("x: tar failed: first\n\n  second\r\nthird\x1b[31m"),
            "x: tar failed: first; second; third [31m"
        );
    }
}
