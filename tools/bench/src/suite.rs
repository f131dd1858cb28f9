//! The measurements of one database: start the sandbox and `order-service serve`, run
//! every point with the load generator, watch the service's CPU and memory, stop.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use loadgen::{Report, Scenario};
use serde::{Deserialize, Serialize};

use crate::database::{Database, Kind};
use crate::procs::{self, Process};
use crate::{loopback, speed};

/// Stock of every SKU: large enough never to run out.
const STOCK: u64 = 1_000_000_000_000;

/// What to measure, the same for every database.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Plan {
    pub warmup: Duration,
    pub duration: Duration,
    /// Concurrencies of the POST /orders points.
    pub create_concurrency: Vec<usize>,
    /// Concurrency of the health, replay and GET points.
    pub reference_concurrency: usize,
    pub skus: Vec<String>,
    pub max_items: usize,
    pub pool_size: usize,
    /// Quiet time between points, so one point's stragglers do not run into the next.
    pub pause: Duration,
    /// Environment of `order-service serve` on top of the benchmark's own.
    pub service_env: Vec<(String, String)>,
    /// The sandbox's inventory replays reserves by key, and the service is told so.
    #[serde(default)]
    pub reserves_replay: bool,
}

impl Plan {
    /// The points in the order they run: the health ceiling first, then orders from the
    /// lowest concurrency up, then replays and reads of orders that exist.
    fn points(&self) -> Vec<(Scenario, usize)> {
        let reference = self.reference_concurrency;
        let mut points = vec![(Scenario::Health, reference)];
        points.extend(
            self.create_concurrency
                .iter()
                .map(|&concurrency| (Scenario::Create, concurrency)),
        );
        points.push((Scenario::Replay, reference));
        points.push((Scenario::Get, reference));
        points
    }
}

/// CPU seconds used during one point (warm-up and drain included) and its wall time.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CpuUse {
    pub service: f64,
    pub sandbox: f64,
    /// This process: the load generator (and the benchmark's sampling, which is noise).
    pub loadgen: f64,
    /// The rest of the machine: the PostgreSQL server, and anything else that ran.
    pub other: f64,
    /// Taken by the hypervisor ("steal"; zero in runs saved before it was kept).
    #[serde(default)]
    pub stolen: f64,
    pub wall: f64,
}

impl CpuUse {
    /// `seconds` of CPU used over the point as cores in use on average.
    pub fn cores(&self, seconds: f64) -> f64 {
        seconds / self.wall.max(f64::MIN_POSITIVE)
    }
}

/// One point: the load generator's report and where the CPU went meanwhile.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Point {
    pub report: Report,
    pub cpu: CpuUse,
    /// [`speed::probe`] just before the point (absent in runs saved before it was kept).
    #[serde(default)]
    pub core_speed: Option<f64>,
    /// [`loopback::probe`] just before the point (absent in runs saved before it was
    /// kept).
    #[serde(default)]
    pub loopback: Option<f64>,
}

impl Point {
    /// CPU seconds of the service per 1,000 successful requests of this point.
    pub fn service_cpu_per_1k(&self) -> Option<f64> {
        let ok = self.report.totals.ok;
        (ok > 0).then(|| self.cpu.service / ok as f64 * 1000.0)
    }
}

/// Memory of the service over the run, KiB.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MemoryUse {
    /// Right after `/health` first answered.
    pub after_start_kib: u64,
    /// Highest `VmRSS` seen by sampling every 100 ms.
    pub sampled_peak_kib: u64,
    /// `VmHWM` at the end: the kernel's own peak.
    pub peak_kib: u64,
}

/// Everything measured on one database.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DatabaseRun {
    pub kind: Kind,
    pub description: String,
    pub points: Vec<Point>,
    pub memory: MemoryUse,
}

impl DatabaseRun {
    /// The point of `scenario` at `concurrency`, if it ran.
    pub fn point(&self, scenario: Scenario, concurrency: usize) -> Option<&Point> {
        self.points.iter().find(|point| {
            point.report.scenario == scenario && point.report.concurrency == concurrency
        })
    }

    /// Service CPU seconds per 1,000 orders over all POST /orders points.
    pub fn cpu_per_1k_orders(&self) -> Option<f64> {
        let (cpu, orders) = self
            .points
            .iter()
            .filter(|point| point.report.scenario == Scenario::Create)
            .fold((0.0, 0u64), |(cpu, orders), point| {
                (cpu + point.cpu.service, orders + point.report.totals.ok)
            });
        (orders > 0).then(|| cpu / orders as f64 * 1000.0)
    }
}

/// Runs `plan` on `database` with the processes of `binary`, in `dir` (logs, SQLite).
pub async fn run(
    binary: &Path,
    database: &Database,
    plan: &Plan,
    dir: &Path,
) -> anyhow::Result<DatabaseRun> {
    let base = procs::free_port_block(4)?;
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(2))
        .build()?;

    let mut sandbox_args = vec![
        "sandbox".to_owned(),
        "--host".into(),
        "127.0.0.1".into(),
        "--port".into(),
        base.to_string(),
    ];
    for sku in &plan.skus {
        sandbox_args.push("--stock".into());
        sandbox_args.push(format!("{sku}={STOCK}"));
    }
    let quiet = [
        ("RUST_LOG".to_owned(), "warn".to_owned()),
        ("LOG_FORMAT".to_owned(), "json".to_owned()),
    ];
    let mut sandbox = Process::start("sandbox", binary, &sandbox_args, &quiet, dir)?;
    let result = async {
        for port in base + 1..=base + 3 {
            let url = format!("http://127.0.0.1:{port}/health");
            sandbox
                .wait_healthy(&client, &url, Duration::from_secs(30))
                .await?;
        }
        let url = |port: u16| format!("http://127.0.0.1:{port}");
        let mut env = vec![
            ("HOST".to_owned(), "127.0.0.1".to_owned()),
            ("PORT".to_owned(), base.to_string()),
            ("DATABASE_URL".to_owned(), database.url.clone()),
            ("PAYMENT_URL".to_owned(), url(base + 1)),
            ("INVENTORY_URL".to_owned(), url(base + 2)),
            ("SHIPPING_URL".to_owned(), url(base + 3)),
        ];
        env.extend(quiet.iter().cloned());
        if plan.reserves_replay {
            replay_reserves(&client, &url(base + 2)).await?;
            env.push((
                "INVENTORY_HONORS_IDEMPOTENCY_KEY".to_owned(),
                "true".to_owned(),
            ));
        }
        env.extend(plan.service_env.iter().cloned());
        let mut service = Process::start("order-service", binary, &["serve".into()], &env, dir)?;
        let result = measure_service(&client, &url(base), &mut service, &sandbox, plan).await;
        let stopped = service.stop(Duration::from_secs(30)).await;
        let run = result?;
        stopped.context("stopping order-service")?;
        Ok(DatabaseRun {
            kind: database.kind,
            description: database.description.clone(),
            points: run.0,
            memory: run.1,
        })
    }
    .await;
    sandbox.stop(Duration::from_secs(10)).await.ok();
    result
}

/// Switches the sandbox inventory at `inventory` to replaying `POST /reserve` by its
/// `Idempotency-Key`.
async fn replay_reserves(client: &reqwest::Client, inventory: &str) -> anyhow::Result<()> {
    client
        .post(format!("{inventory}/_sandbox/faults"))
        .json(&serde_json::json!({"endpoint": "POST /reserve", "honorIdempotencyKey": true}))
        .send()
        .await?
        .error_for_status()
        .context("telling the sandbox's inventory to replay reserves by key")?;
    Ok(())
}

async fn measure_service(
    client: &reqwest::Client,
    target: &str,
    service: &mut Process,
    sandbox: &Process,
    plan: &Plan,
) -> anyhow::Result<(Vec<Point>, MemoryUse)> {
    service
        .wait_healthy(client, &format!("{target}/health"), Duration::from_secs(60))
        .await?;
    let after_start_kib = service.memory()?.rss_kib;

    let sampled_peak = Arc::new(AtomicU64::new(after_start_kib));
    let sampler = tokio::spawn(sample_rss(service.pid(), Arc::clone(&sampled_peak)));

    let mut points = Vec::new();
    let mut outcome = Ok(());
    for (scenario, concurrency) in plan.points() {
        match measure_point(target, scenario, concurrency, service, sandbox, plan).await {
            Ok(point) => points.push(point),
            Err(error) => {
                outcome = Err(error);
                break;
            }
        }
        tokio::time::sleep(plan.pause).await;
    }
    sampler.abort();
    outcome?;
    let memory = service.memory()?;
    Ok((
        points,
        MemoryUse {
            after_start_kib,
            sampled_peak_kib: sampled_peak.load(Ordering::Relaxed).max(memory.rss_kib),
            // The kernel updates VmHWM lazily: a sample may have seen more.
            peak_kib: memory
                .peak_kib
                .max(memory.rss_kib)
                .max(sampled_peak.load(Ordering::Relaxed)),
        },
    ))
}

async fn measure_point(
    target: &str,
    scenario: Scenario,
    concurrency: usize,
    service: &mut Process,
    sandbox: &Process,
    plan: &Plan,
) -> anyhow::Result<Point> {
    let mut config = loadgen::Config::new(target, scenario);
    config.concurrency = concurrency;
    config.warmup = plan.warmup;
    config.duration = plan.duration;
    config.skus = plan.skus.clone();
    config.max_items = plan.max_items;
    config.pool_size = plan.pool_size;
    let label = format!("{} at concurrency {concurrency}", scenario.label());
    let core_speed = tokio::task::spawn_blocking(speed::probe)
        .await
        .context("the CPU speed probe")?;
    let loopback = tokio::task::spawn_blocking(loopback::probe)
        .await
        .context("the loopback probe's task")?
        .context("the loopback probe")?;
    let prepared = loadgen::prepare(config)
        .await
        .with_context(|| format!("preparing {label}"))?;

    let self_stat = "/proc/self/stat";
    let before = (
        service.cpu_seconds()?,
        sandbox.cpu_seconds()?,
        procs::cpu_seconds(self_stat)?,
        procs::MachineCpu::now()?,
    );
    let report = prepared
        .run()
        .await
        .with_context(|| format!("running {label}"))?;
    let after = (
        service.cpu_seconds()?,
        sandbox.cpu_seconds()?,
        procs::cpu_seconds(self_stat)?,
        procs::MachineCpu::now()?,
    );
    service
        .ensure_running()
        .with_context(|| format!("during {label}"))?;

    let (service_cpu, sandbox_cpu, loadgen_cpu) =
        (after.0 - before.0, after.1 - before.1, after.2 - before.2);
    let cpu = CpuUse {
        service: service_cpu,
        sandbox: sandbox_cpu,
        loadgen: loadgen_cpu,
        // The counters tick at different moments: never below zero.
        other: (after.3.busy - before.3.busy - service_cpu - sandbox_cpu - loadgen_cpu).max(0.0),
        stolen: after.3.stolen - before.3.stolen,
        wall: report.totals.seconds,
    };
    eprintln!(
        "bench:   {:<22} c={:<4} {:>9.1} req/s  p50 {:>9}  p99 {:>9}  errors {}  cores {:.2}/{:.2}/{:.2}/{:.2} stolen {:.2}  core speed {:.0}  loopback {:.1}k",
        scenario.label(),
        concurrency,
        report.throughput,
        loadgen::format_micros(report.latency_us.p50),
        loadgen::format_micros(report.latency_us.p99),
        crate::markdown::errors(&report),
        cpu.cores(cpu.service),
        cpu.cores(cpu.sandbox),
        cpu.cores(cpu.loadgen),
        cpu.cores(cpu.other),
        cpu.cores(cpu.stolen),
        core_speed,
        loopback,
    );
    Ok(Point {
        report,
        cpu,
        core_speed: Some(core_speed),
        loopback: Some(loopback),
    })
}

/// Keeps the highest `VmRSS` of `pid` in `peak` until aborted.
async fn sample_rss(pid: u32, peak: Arc<AtomicU64>) {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tick.tick().await;
        if let Ok(memory) = procs::memory(pid) {
            peak.fetch_max(memory.rss_kib, Ordering::Relaxed);
        }
    }
}

/// The SKUs of the run: `SKU-001` … (`count` of them).
pub fn skus(count: usize) -> Vec<String> {
    (1..=count).map(|i| format!("SKU-{i:03}")).collect()
}

/// The directory of one database's processes inside the run's directory.
pub fn subdir(root: &Path, kind: Kind) -> anyhow::Result<PathBuf> {
    let dir = root.join(match kind {
        Kind::Sqlite => "sqlite",
        Kind::Postgres => "postgres",
    });
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}
