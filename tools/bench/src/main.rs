//! `bench`: the one-command benchmark of the order service.
//!
//! # Layout
//! - `cli`: the command line.
//! - `machine`: what the numbers were measured on.
//! - `database`: a fresh SQLite file or PostgreSQL schema per run.
//! - `procs`: the sandbox and service processes, their CPU time and memory from `/proc`.
//! - `suite`: the points of one database, each run with the `loadgen` library.
//! - `speed`, `loopback`: how fast the machine computes, and passes messages between
//!   threads, just before each point.
//! - `check`: what fails a run (errors, never speed).
//! - `markdown`, `chart`: the section for `BENCHMARKS.md` and the SVG chart.

mod chart;
mod check;
mod cli;
mod database;
mod loopback;
mod machine;
mod markdown;
mod procs;
mod speed;
mod suite;

use std::path::{Component, Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::Parser;
use serde::{Deserialize, Serialize};

use crate::cli::Args;
use crate::database::{Database, Kind};
use crate::machine::Machine;
use crate::suite::{DatabaseRun, Plan};

/// Everything a run produced; also what `--json` writes.
#[derive(Debug, Serialize, Deserialize)]
pub struct Results {
    pub machine: Machine,
    /// The command that produced these numbers.
    pub command: String,
    pub smoke: bool,
    pub plan: Plan,
    pub databases: Vec<DatabaseRun>,
    /// The chart's path as the Markdown links it.
    pub chart: Option<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("bench: starting the runtime: {error}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(args)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(error) => {
            eprintln!("bench: {error:#}");
            ExitCode::from(2)
        }
    }
}

/// Runs the benchmark (or, with `--render`, reads a saved one) and writes its outputs;
/// `Ok(false)` when a check failed.
async fn run(args: Args) -> anyhow::Result<bool> {
    let started = Instant::now();
    let mut results = match &args.render {
        Some(saved) => {
            let text = std::fs::read_to_string(saved)
                .with_context(|| format!("reading {}", saved.display()))?;
            serde_json::from_str(&text)
                .with_context(|| format!("{} is not a saved run", saved.display()))?
        }
        None => measure(&args).await?,
    };
    let problems: Vec<String> = results
        .databases
        .iter()
        .flat_map(|run| check::problems(run, args.max_error_share))
        .collect();
    write_outputs(&args, &mut results)?;
    eprintln!(
        "bench: finished in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    for problem in &problems {
        eprintln!("bench: FAILED: {problem}");
    }
    Ok(problems.is_empty())
}

/// Measures every database of `args`.
async fn measure(args: &Args) -> anyhow::Result<Results> {
    let binary = service_binary(args)?;
    let machine = Machine::inspect(&binary);
    let plan = Plan {
        warmup: args.warmup(),
        duration: args.duration(),
        create_concurrency: args.concurrency.clone(),
        reference_concurrency: args.reference_concurrency,
        skus: suite::skus(args.skus.max(1)),
        max_items: 5,
        pool_size: args.pool_size(),
        pause: if args.smoke {
            std::time::Duration::from_millis(200)
        } else {
            std::time::Duration::from_secs(1)
        },
        service_env: args.service_env.clone(),
        reserves_replay: args.reserves_replay,
    };
    if plan.create_concurrency.contains(&0) || plan.reference_concurrency == 0 {
        bail!("concurrencies must be at least 1");
    }
    eprintln!(
        "bench: {} on {} cores ({}), load average {}; order-service {} ({})",
        if args.smoke { "smoke run" } else { "full run" },
        machine.cores,
        machine.cpu_model,
        machine.load_average,
        binary.display(),
        machine.service_profile,
    );

    let workdir = tempfile::Builder::new()
        .prefix("order-service-bench-")
        .tempdir()
        .context("creating a temporary directory")?;
    let mut kinds = Vec::new();
    if args.runs_sqlite() {
        kinds.push(Kind::Sqlite);
    }
    if args.runs_postgres() {
        kinds.push(Kind::Postgres);
    }

    let mut databases = Vec::new();
    for kind in kinds {
        let dir = suite::subdir(workdir.path(), kind)?;
        let database = match kind {
            Kind::Sqlite => Database::sqlite(&dir),
            Kind::Postgres => Database::postgres(&args.postgres_url).await?,
        };
        eprintln!("bench: {}", database.description);
        let result = suite::run(&binary, &database, &plan, &dir).await;
        if let Err(error) = database.drop().await {
            eprintln!("bench: {error:#}");
        }
        match result {
            Ok(run) => databases.push(run),
            Err(error) => {
                let kept = workdir.keep();
                eprintln!("bench: the processes' logs are kept in {}", kept.display());
                return Err(error.context(format!("on {}", kind.name())));
            }
        }
    }
    Ok(Results {
        machine,
        command: command(),
        smoke: args.smoke,
        plan,
        databases,
        chart: None,
    })
}

/// The chart (`--svg`), the Markdown (`--out`, else standard output) and the JSON
/// (`--json`).
fn write_outputs(args: &Args, results: &mut Results) -> anyhow::Result<()> {
    if let Some(svg) = &args.svg {
        if let Some(parent) = svg.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)?;
        }
        let machine = &results.machine;
        let subtitle = format!(
            "{} cores shared by load generator, sandbox, service and database · order-service {} build · {} per point · {}",
            machine.cores,
            machine.service_profile,
            seconds(results.plan.duration),
            machine.date
        );
        chart::render(svg, &results.databases, &subtitle)?;
        eprintln!("bench: wrote {}", svg.display());
        let base = args
            .out
            .as_deref()
            .and_then(Path::parent)
            .unwrap_or(Path::new(""));
        results.chart = Some(relative(svg, base)?);
    }
    let section = markdown::render(results);
    match &args.out {
        Some(out) => {
            let existing = std::fs::read_to_string(out).ok();
            std::fs::write(out, markdown::splice(existing.as_deref(), &section))
                .with_context(|| format!("writing {}", out.display()))?;
            eprintln!("bench: wrote {}", out.display());
        }
        None => print!("{section}"),
    }
    if let Some(json) = &args.json {
        std::fs::write(json, serde_json::to_string_pretty(results)?)
            .with_context(|| format!("writing {}", json.display()))?;
        eprintln!("bench: wrote {}", json.display());
    }
    Ok(())
}

/// `--bin`, else the `order-service` next to this executable.
fn service_binary(args: &Args) -> anyhow::Result<PathBuf> {
    let binary = match &args.binary {
        Some(binary) => binary.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("this executable has no directory")?
            .join("order-service"),
    };
    if !binary.is_file() {
        bail!(
            "{} does not exist: build it first (cargo build --release --bin order-service) or pass --bin",
            binary.display()
        );
    }
    Ok(std::path::absolute(&binary)?)
}

/// The command line that produced the numbers, as someone would type it.
fn command() -> String {
    if let Ok(command) = std::env::var("BENCH_COMMAND") {
        return command;
    }
    let args: Vec<String> = std::env::args().skip(1).map(|a| shell_quote(&a)).collect();
    let profile = if cfg!(debug_assertions) {
        ""
    } else {
        " --release"
    };
    let mut line =
        format!("cargo build{profile} --bin order-service\ncargo run{profile} -p bench --");
    for arg in args {
        line.push(' ');
        line.push_str(&arg);
    }
    line
}

fn shell_quote(arg: &str) -> String {
    let plain = arg
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c));
    if plain && !arg.is_empty() {
        arg.to_owned()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

fn seconds(duration: std::time::Duration) -> String {
    format!("{} s", duration.as_secs_f64())
}

/// `target` as a path relative to the directory `base`, with `/` separators (for a
/// Markdown link).
fn relative(target: &Path, base: &Path) -> anyhow::Result<String> {
    let normal = |path: &Path| -> anyhow::Result<Vec<String>> {
        let mut parts: Vec<String> = Vec::new();
        for component in std::path::absolute(path)?.components() {
            match component {
                Component::Normal(part) => parts.push(part.to_string_lossy().into_owned()),
                Component::ParentDir => {
                    parts.pop();
                }
                _ => {}
            }
        }
        Ok(parts)
    };
    let base = if base.as_os_str().is_empty() {
        Path::new(".")
    } else {
        base
    };
    let (target, base) = (normal(target)?, normal(base)?);
    let common = target.iter().zip(&base).take_while(|(a, b)| a == b).count();
    let mut parts: Vec<String> = vec!["..".to_owned(); base.len() - common];
    parts.extend(target[common..].iter().cloned());
    Ok(parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chart_is_linked_relative_to_the_markdown_file() {
        assert_eq!(
            relative(Path::new("/r/docs/benchmark.svg"), Path::new("/r")).unwrap(),
            "docs/benchmark.svg"
        );
        assert_eq!(
            relative(Path::new("/r/docs/b.svg"), Path::new("/r/tools/bench")).unwrap(),
            "../../docs/b.svg"
        );
    }

    #[test]
    fn arguments_are_quoted_only_when_needed() {
        assert_eq!(shell_quote("--out"), "--out");
        assert_eq!(shell_quote("a b"), "'a b'");
    }
}
