//! One chaos run, phase by phase: set up (database, sandbox, replicas, faults), load with
//! kills, settle with faults off, check, report; and the teardown that runs whatever
//! happened (error, panic or Ctrl-C).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::{FutureExt, StreamExt};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::check::{Evidence, check};
use crate::cli::{Args, Mode};
use crate::db::Database;
use crate::killer::{KillStats, run_killer, run_watchdog};
use crate::load::{self, Clients, Journal, Mix};
use crate::procs::{Fleet, Sandbox, ServiceTemplate};
use crate::report::{self, Summary};
use crate::sandbox::{SandboxAdmin, fault_bodies};
use crate::{api, settle};

/// Seconds `POST /orders` waits before answering 202 (`ORDER_WAIT_SECS`).
const ORDER_WAIT_SECS: u64 = 3;
/// Timelines of involved orders written to the report file, at most.
const REPORT_TIMELINES: usize = 40;

/// How a run ended.
pub enum Outcome {
    /// Checked: the summary and whether everything held (and settled in time).
    Checked { summary: Summary, passed: bool },
    /// Stopped by Ctrl-C before the check.
    Interrupted,
}

/// What has to be cleaned up, whatever happens.
#[derive(Default)]
struct Resources {
    run_dir: Option<PathBuf>,
    database: Option<Database>,
    sandbox: Option<Sandbox>,
    fleet: Option<Arc<Fleet>>,
    stop: Option<watch::Sender<bool>>,
    tasks: Vec<JoinHandle<()>>,
    keep_run_dir: bool,
}

/// Runs everything and tears down, also after an error, a panic or Ctrl-C.
pub async fn run(args: Args) -> anyhow::Result<Outcome> {
    let seed = args
        .seed
        .unwrap_or_else(|| u64::from(rand::random::<u32>()));
    let mut resources = Resources::default();
    let result = {
        let phases = std::panic::AssertUnwindSafe(phases(&args, seed, &mut resources));
        tokio::select! {
            result = phases.catch_unwind() => Some(result),
            _ = tokio::signal::ctrl_c() => None,
        }
    };
    match &result {
        None => eprintln!("chaos: interrupted; stopping every process"),
        // The logs tell why a run that got as far as starting processes failed.
        Some(Ok(Err(_)) | Err(_)) if resources.sandbox.is_some() => {
            resources.keep_run_dir = true;
        }
        Some(_) => {}
    }
    teardown(&args, &mut resources).await;
    match result {
        None => Ok(Outcome::Interrupted),
        Some(Ok(outcome)) => outcome,
        Some(Err(panic)) => std::panic::resume_unwind(panic),
    }
}

async fn teardown(args: &Args, resources: &mut Resources) {
    if let Some(stop) = &resources.stop {
        let _ = stop.send(true);
    }
    for task in resources.tasks.drain(..) {
        task.abort();
    }
    if let Some(fleet) = resources.fleet.take() {
        fleet.stop_all().await;
    }
    if let Some(sandbox) = resources.sandbox.as_mut() {
        sandbox.stop().await;
    }
    if let Some(database) = resources.database.take() {
        if args.keep {
            eprintln!("chaos: keeping {}", database.describe());
        } else if let Err(err) = database.drop_schema().await {
            eprintln!("chaos: could not drop the schema: {err:#}");
        }
    }
    if let Some(dir) = resources.run_dir.take() {
        if args.keep || resources.keep_run_dir {
            eprintln!("chaos: logs and report kept in {}", dir.display());
        } else if let Err(err) = std::fs::remove_dir_all(&dir) {
            eprintln!("chaos: could not remove {}: {err}", dir.display());
        }
    }
}

async fn phases(args: &Args, seed: u64, res: &mut Resources) -> anyhow::Result<Outcome> {
    let replicas = args.replica_count()?;
    let started = Instant::now();
    let log = |text: &str| eprintln!("chaos: [{:>6.1}s] {text}", started.elapsed().as_secs_f64());
    eprintln!(
        "chaos: mode={} replicas={replicas} seed={seed} (repeat with --seed {seed})",
        args.mode.as_str()
    );
    let bin = find_bin(args.bin.as_deref())?;
    let run_dir = std::env::temp_dir().join(format!(
        "chaos-{}-{seed}-{}",
        args.mode.as_str(),
        std::process::id()
    ));
    std::fs::create_dir_all(&run_dir).with_context(|| format!("creating {}", run_dir.display()))?;
    res.run_dir = Some(run_dir.clone());
    log(&format!(
        "setup: binary {}, run directory {}",
        bin.display(),
        run_dir.display()
    ));

    let admin_http = http_client(Duration::from_secs(10))?;
    let orders_http = http_client(Duration::from_secs(ORDER_WAIT_SECS + 7))?;

    let database = match args.mode {
        Mode::Postgres => {
            let schema = format!("chaos_{}_{seed}", std::process::id());
            Database::postgres(&args.database_url, &schema).await?
        }
        Mode::Sqlite => Database::sqlite(&run_dir),
    };
    log(&format!("setup: database {}", database.describe()));
    let database_url = database.url().to_owned();
    res.database = Some(database);

    let stock: Vec<(&str, u64)> = load::PLENTIFUL
        .iter()
        .map(|&sku| (sku, load::PLENTIFUL_STOCK))
        .chain([(load::SCARCE, load::SCARCE_STOCK)])
        .collect();
    res.sandbox = Some(Sandbox::start(&bin, &run_dir, seed, &stock, &admin_http).await?);
    let sandbox = res.sandbox.as_ref().context("the sandbox")?;
    let admin = SandboxAdmin {
        http: &admin_http,
        sandbox,
    };
    if args.honor_reserve_keys {
        admin.honor_reserve_keys().await?;
    }
    let initial = admin.ledgers().await?;
    let initial_stock = initial.inventory.stock.clone();
    let template = ServiceTemplate {
        bin: bin.clone(),
        env: service_env(args, &database_url, sandbox),
        dir: run_dir.clone(),
    };
    let fleet = Arc::new(Fleet::start(template, replicas, admin_http.clone()).await?);
    res.fleet = Some(fleet.clone());
    log(&format!(
        "setup: sandbox ready, {replicas} replica(s) ready on ports {:?}",
        fleet.ports()
    ));
    if !args.no_faults {
        admin.inject(&fault_bodies(args, seed)).await?;
    }
    log(&format!(
        "load: {:?} with {} clients, faults {}, kill every ~{:?}",
        args.duration,
        args.concurrency,
        if args.no_faults { "off" } else { "on" },
        args.kill_every
    ));

    // Load, with the killer and the watchdog beside it.
    let journal = Arc::new(Journal::default());
    let mix = Mix {
        fail_share: args.fail_share,
        large_share: args.large_share,
        duplicate_share: args.duplicate_share,
    };
    let clients = Arc::new(Clients::new(
        orders_http.clone(),
        fleet.clone(),
        journal.clone(),
        seed,
        mix,
    ));
    let stats = Arc::new(KillStats::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    res.stop = Some(stop_tx.clone());
    let killer = tokio::spawn(run_killer(
        fleet.clone(),
        args.kill_every,
        seed,
        stats.clone(),
        stop_rx.clone(),
        started,
    ));
    let watchdog = tokio::spawn(run_watchdog(
        fleet.clone(),
        stats.clone(),
        stop_rx.clone(),
        started,
    ));
    let progress = {
        let clients = clients.clone();
        let stats = stats.clone();
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(10)) => {}
                    _ = stop.wait_for(|stop| *stop) => return,
                }
                eprintln!(
                    "chaos: [{:>6.1}s] load: {} orders fired, {} kills",
                    started.elapsed().as_secs_f64(),
                    clients.fired(),
                    stats.kills.load(Ordering::Relaxed)
                );
            }
        })
    };
    res.tasks.push(progress);
    let load = {
        let clients = clients.clone();
        let until = Instant::now() + args.duration;
        let concurrency = args.concurrency;
        tokio::spawn(async move { clients.load(concurrency, until).await })
    };
    let load_abort = load.abort_handle();
    let load_result = load.await;
    let _ = stop_tx.send(true);
    load_abort.abort();
    load_result.context("the load task")?;
    killer.await.context("the killer task")??;
    watchdog.await.context("the watchdog task")??;
    for index in fleet.stopped().await {
        fleet.restart(index).await?;
    }
    res.sandbox.as_mut().context("the sandbox")?.check_alive()?;
    let sandbox = res.sandbox.as_ref().context("the sandbox")?;
    let admin = SandboxAdmin {
        http: &admin_http,
        sandbox,
    };
    let kills = stats.kills.load(Ordering::Relaxed);
    log(&format!(
        "load done: {} orders fired, {kills} kills; clearing faults",
        clients.fired()
    ));

    // Settle with faults off.
    admin.clear().await?;
    let settled = settle::settle(&clients, args.concurrency, args.settle_timeout, seed).await?;
    if settled.settled {
        log(&format!("settled in {:.1}s", settled.took.as_secs_f64()));
    } else {
        log(&format!(
            "NOT settled after {:.1}s: {} keys without a final answer, pending orders: {}",
            settled.took.as_secs_f64(),
            settled.unresolved_keys,
            if settled.pending_orders == usize::MAX {
                "unknown".to_owned()
            } else {
                settled.pending_orders.to_string()
            }
        ));
    }

    // Some repairs are due a little later (a commit or compensation that failed under the
    // faults is retried after a pause), so wait until the invariants hold or the settle
    // time is up, checking without the per-order lookups; then check for good.
    let base = fleet.url(0);
    let keys = journal.snapshot();
    let settle_deadline = Instant::now() + args.settle_timeout.saturating_sub(settled.took);
    let mut last_report = Instant::now();
    let mut waited = false;
    while settled.settled && Instant::now() < settle_deadline {
        let orders = api::list_orders(&orders_http, &base, None).await?;
        let ledgers = admin.ledgers().await?;
        let listed: BTreeMap<String, u16> = orders.iter().map(|o| (o.id.clone(), 200)).collect();
        let findings = check(&Evidence {
            orders: &orders,
            initial_stock: &initial_stock,
            ledgers: &ledgers,
            keys: &keys,
            lookups: &listed,
        });
        if findings.violations.is_empty() {
            break;
        }
        if !waited || last_report.elapsed() >= Duration::from_secs(5) {
            let first = &findings.violations[0];
            log(&format!(
                "settle: {} violations still open, waiting for repairs (first: {} order={}: {})",
                findings.violations.len(),
                first.invariant,
                first.order_id.as_deref().unwrap_or("-"),
                first.detail
            ));
            last_report = Instant::now();
        }
        waited = true;
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    if waited {
        log("settle: done waiting for repairs");
    }

    // Check.
    let orders = api::list_orders(&orders_http, &base, None).await?;
    let ledgers = admin.ledgers().await?;
    let lookups = look_up_named_orders(&orders_http, &fleet, &keys).await?;
    let mut findings = check(&Evidence {
        orders: &orders,
        initial_stock: &initial_stock,
        ledgers: &ledgers,
        keys: &keys,
        lookups: &lookups,
    });
    log(&format!("answers: {}", answer_breakdown(&keys)));
    let lines: Vec<String> = keys.iter().map(load::KeyRecord::json_line).collect();
    std::fs::write(run_dir.join("answers.jsonl"), lines.join("\n") + "\n")
        .context("writing answers.jsonl")?;
    if !settled.settled {
        findings.violations.insert(
            0,
            crate::check::Violation {
                invariant: "settle",
                order_id: None,
                detail: format!(
                    "not settled within {:?}: {} keys without a final answer",
                    args.settle_timeout, settled.unresolved_keys
                ),
            },
        );
    }
    let crashes = stats.crashes.lock().unwrap().clone();
    for crash in &crashes {
        findings.violations.push(crate::check::Violation {
            invariant: "crash",
            order_id: None,
            detail: crash.clone(),
        });
    }
    let acknowledged = keys
        .iter()
        .filter(|k| k.answers.iter().any(|a| a.acknowledged()))
        .count();
    let summary = Summary {
        mode: args.mode.as_str(),
        replicas,
        seed,
        orders: clients.fired(),
        acknowledged,
        kills,
        faults_injected: ledgers.faults_injected(),
        needs_attention: findings.needs_attention.len(),
        violations: findings.violations.len(),
    };
    log(&format!(
        "checked {} orders in the database; faults: {}; replica crashes: {}; unexpected answers: {}",
        orders.len(),
        ledgers.fault_breakdown(),
        crashes.len(),
        findings.unexpected_answers.len()
    ));

    let passed = findings.violations.is_empty();
    let report_path = run_dir.join("report.txt");
    let involved: Vec<String> = findings
        .violations
        .iter()
        .filter_map(|v| v.order_id.clone())
        .chain(findings.needs_attention.iter().map(|(id, _)| id.clone()))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .take(REPORT_TIMELINES)
        .collect();
    let mut timelines = Vec::new();
    for id in involved {
        if let Ok(events) = api::events(&orders_http, &base, &id).await {
            timelines.push((id, events));
        }
    }
    std::fs::write(
        &report_path,
        report::full_text(&summary, &findings, &timelines),
    )
    .with_context(|| format!("writing {}", report_path.display()))?;
    if !passed || !findings.unexpected_answers.is_empty() {
        res.keep_run_dir = true;
    }
    report::print(&findings, Some(&report_path));
    Ok(Outcome::Checked { summary, passed })
}

/// How many answers of each kind the clients got, e.g. `201=900 202=12 lost=30`.
fn answer_breakdown(keys: &[load::KeyRecord]) -> String {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for answer in keys.iter().flat_map(|k| &k.answers) {
        let label = match (answer.status, answer.verdict()) {
            (None, _) => "lost".to_owned(),
            (Some(409), load::Verdict::InProgress) => "409-in-progress".to_owned(),
            (Some(status), _) if answer.replayed => format!("{status}-replayed"),
            (Some(status), _) => status.to_string(),
        };
        *counts.entry(label).or_default() += 1;
    }
    counts
        .iter()
        .map(|(label, count)| format!("{label}={count}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `GET /orders/{id}` for every order id any answer named, spread over the replicas.
async fn look_up_named_orders(
    http: &reqwest::Client,
    fleet: &Fleet,
    keys: &[load::KeyRecord],
) -> anyhow::Result<BTreeMap<String, u16>> {
    let ids: std::collections::BTreeSet<String> = keys
        .iter()
        .flat_map(|k| k.answers.iter().filter_map(|a| a.order_id.clone()))
        .collect();
    let lookups = futures::stream::iter(ids.into_iter().enumerate())
        .map(|(i, id)| {
            let base = fleet.url(i % fleet.len());
            async move {
                let status = api::order_status_code(http, &base, &id).await?;
                anyhow::Ok((id, status))
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    lookups.into_iter().collect()
}

/// The environment of every replica; `--service-env` wins over the tool's settings.
fn service_env(args: &Args, database_url: &str, sandbox: &Sandbox) -> Vec<(String, String)> {
    use crate::procs::Service;
    let mut env: Vec<(String, String)> = [
        ("DATABASE_URL", database_url.to_owned()),
        ("INVENTORY_URL", sandbox.url(Service::Inventory)),
        ("PAYMENT_URL", sandbox.url(Service::Payment)),
        ("SHIPPING_URL", sandbox.url(Service::Shipping)),
        ("DOWNSTREAM_TIMEOUT_MS", "1000".to_owned()),
        ("RETRY_ATTEMPTS", "3".to_owned()),
        ("SAGA_LEASE_SECS", args.lease_secs.to_string()),
        ("RECOVERY_ENABLED", "true".to_owned()),
        ("RECOVERY_INTERVAL_SECS", "1".to_owned()),
        ("ORDER_WAIT_SECS", ORDER_WAIT_SECS.to_string()),
        (
            "INVENTORY_HONORS_IDEMPOTENCY_KEY",
            args.honor_reserve_keys.to_string(),
        ),
        ("DATABASE_MAX_CONNECTIONS", "8".to_owned()),
        ("SHUTDOWN_GRACE_SECS", "1".to_owned()),
        ("LOG_FORMAT", "json".to_owned()),
        ("RUST_LOG", "info,sqlx=warn,hyper=warn".to_owned()),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_owned(), value))
    .collect();
    for (name, value) in &args.service_env {
        env.retain(|(n, _)| n != name);
        env.push((name.clone(), value.clone()));
    }
    env
}

fn http_client(timeout: Duration) -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(timeout)
        .connect_timeout(Duration::from_secs(1))
        .pool_idle_timeout(Duration::from_secs(5))
        .build()
        .context("building the HTTP client")
}

/// `--bin`, else an `order-service` next to this binary, in `$CARGO_TARGET_DIR/release`,
/// or in `target/release`; absolute, since the services run in the run directory.
fn find_bin(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    match explicit {
        Some(path) => candidates.push(path.to_owned()),
        None => {
            if let Ok(exe) = std::env::current_exe()
                && let Some(dir) = exe.parent()
            {
                candidates.push(dir.join("order-service"));
            }
            if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
                candidates.push(PathBuf::from(dir).join("release/order-service"));
            }
            candidates.push(PathBuf::from("target/release/order-service"));
            candidates.push(
                Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/release/order-service"),
            );
        }
    }
    for candidate in &candidates {
        if candidate.is_file() {
            return candidate
                .canonicalize()
                .with_context(|| format!("resolving {}", candidate.display()));
        }
    }
    bail!(
        "no order-service binary at {candidates:?}; build it with `cargo build --release --bin order-service` or pass --bin"
    )
}
