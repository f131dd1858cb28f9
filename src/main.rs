//! The `order-service` binary: reads `.env`, parses the command line, runs.

use clap::Parser;
use order_service::cli::{self, Cli};

/// mimalloc instead of the system allocator: a saga allocates many small, short-lived
/// buffers (headers, JSON, rows) across threads, where glibc's malloc cost about a tenth
/// of the service's CPU under load (see BENCHMARKS.md). Built with `no_thp`: its arenas
/// asked for transparent huge pages, which made the peak RSS ~20 MiB higher (~92 against
/// ~71 MiB at 256 clients) for no measurable speed.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
