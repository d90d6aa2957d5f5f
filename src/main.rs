use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = headcount::cli::Cli::parse();
    match headcount::cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("headcount: error: {message}");
            ExitCode::FAILURE
        }
    }
}
