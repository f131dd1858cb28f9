//! A load generator for the order service, usable against any deployment.
//!
//! # Layout
//! - [`config`]: what a run does (target, scenario, pacing, order bodies); also the CLI.
//! - `body`: order bodies and idempotency keys from pre-rendered pieces.
//! - `pool`: the orders that `replay` and `get` work on, created before the run.
//! - [`run`]: the client, the workers, closed and open loop pacing.
//! - `stats`: per-worker HDR histograms and counters, merged at the end.
//! - [`report`]: the result, as text or JSON.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! let config = loadgen::Config::new("http://127.0.0.1:8004", loadgen::Scenario::Create);
//! let report = loadgen::run(config).await?;
//! println!("{report}");
//! # Ok(())
//! # }
//! ```

mod body;
pub mod config;
mod pool;
pub mod report;
pub mod run;
mod stats;

pub use config::{Config, Mode, Scenario, parse_duration};
pub use report::{Report, format_micros};
pub use run::{Prepared, prepare, run};
