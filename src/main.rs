use clap::Parser;

mod cli;

fn main() {
    let args = cli::Cli::parse();
    if let Err(err) = cli::run(args) {
        // One line: the file or stage, and the problem.
        eprintln!("stemcell: {err:#}");
        std::process::exit(1);
    }
}
