use clap::FromArgMatches;

mod cli;

fn main() {
    let args =
        cli::Cli::from_arg_matches(&cli::command().get_matches()).unwrap_or_else(|e| e.exit());
    if let Err(err) = cli::run(args) {
        // One line: the file or stage, and the problem.
        eprintln!("stemcell: {err:#}");
        std::process::exit(1);
    }
}
