//! `chaos`: a chaos test of the order service. Starts the platform sandbox with faults and
//! several order-service processes (PostgreSQL) or one (SQLite), fires concurrent orders
//! with idempotency keys while killing processes with SIGKILL, then settles and checks every
//! invariant against the sandbox ledgers and the order database. See README.md.
//!
//! # Layout
//! - `cli`: the flags. `run`: the phases and the teardown.
//! - `db`: the run's PostgreSQL schema or SQLite file. `procs`: the sandbox and replica
//!   processes. `sandbox`: faults and ledgers through the sandbox's admin routes.
//! - `load`: the orders and the clients that send them, and the journal of answers.
//!   `killer`: SIGKILL and restart, and the crash watchdog. `settle`: the wait for final
//!   answers.
//! - `api`: reading orders back. `check`: the invariants. `report`: what is printed.

mod api;
mod check;
mod cli;
mod db;
mod killer;
mod load;
mod procs;
mod report;
mod run;
mod sandbox;
mod settle;

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let args = cli::Args::parse();
    match run::run(args).await {
        Ok(run::Outcome::Checked { summary, passed }) => {
            println!("{summary}");
            if passed {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Ok(run::Outcome::Interrupted) => ExitCode::from(130),
        Err(err) => {
            eprintln!("chaos: error: {err:#}");
            ExitCode::from(2)
        }
    }
}
