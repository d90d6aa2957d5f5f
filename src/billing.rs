//! `headcount billing export`: the monthly export from the command line.

#[derive(Debug, clap::Subcommand)]
pub enum BillingCommand {}

pub fn run(_cmd: BillingCommand) -> Result<(), String> {
    Err("billing export is not built yet".to_owned())
}
