//! The load generator and site simulator (`headcount load`). It speaks HTTP only.

/// `headcount load` options.
#[derive(Debug, clap::Args)]
pub struct LoadArgs {}

pub fn run(_args: LoadArgs) -> Result<(), String> {
    Err("the load generator is not built yet".to_owned())
}
