//! The `order-service` binary: reads `.env`, parses the command line, runs.

use clap::Parser;
use order_service::cli::{self, Cli};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // A missing .env is normal; a broken one is reported by the variables it fails to set.
    let _ = dotenvy::dotenv();
    let cli = Cli::parse();
    match cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("order-service: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
