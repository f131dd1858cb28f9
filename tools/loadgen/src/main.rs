//! `loadgen`: sends orders (or replays, reads, health checks) to an order service and
//! prints throughput, latency percentiles and errors.

use std::process::ExitCode;

use clap::Parser;

/// Load generator for the order service.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(flatten)]
    config: loadgen::Config,

    /// Print the report as JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match loadgen::run(cli.config).await {
        Ok(report) if cli.json => match serde_json::to_string_pretty(&report) {
            Ok(json) => println!("{json}"),
            Err(error) => {
                eprintln!("loadgen: {error}");
                return ExitCode::FAILURE;
            }
        },
        Ok(report) => print!("{report}"),
        Err(error) => {
            eprintln!("loadgen: {error:#}");
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}
