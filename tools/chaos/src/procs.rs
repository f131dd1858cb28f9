//! The child processes: the platform sandbox and the order-service replicas — spawned in
//! their own process group (so a Ctrl-C reaches only this tool), logged to the run
//! directory, waited for until ready, killed with SIGKILL and restarted on the same port.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rand::Rng;
use tokio::process::{Child, Command};
use tokio::sync::Mutex;

/// How long a process may take to become ready (migrations run at start).
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// What every replica is started with: the binary, its environment, its working directory.
#[derive(Clone, Debug)]
pub struct ServiceTemplate {
    pub bin: PathBuf,
    pub env: Vec<(String, String)>,
    pub dir: PathBuf,
}

/// The `order-service sandbox` process: payment, inventory and shipping on base + 1, 2, 3.
pub struct Sandbox {
    child: Child,
    base_port: u16,
}

/// The three services of the sandbox.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Service {
    Payment,
    Inventory,
    Shipping,
}

impl Service {
    pub const ALL: [Service; 3] = [Service::Inventory, Service::Payment, Service::Shipping];

    pub fn name(self) -> &'static str {
        match self {
            Service::Payment => "payment",
            Service::Inventory => "inventory",
            Service::Shipping => "shipping",
        }
    }
}

impl Sandbox {
    /// Starts the sandbox on free ports, with `stock` on top of its seed stock.
    pub async fn start(
        bin: &Path,
        dir: &Path,
        seed: u64,
        stock: &[(&str, u64)],
        http: &reqwest::Client,
    ) -> anyhow::Result<Self> {
        let log = dir.join("sandbox.log");
        let mut last_error = None;
        for _ in 0..5 {
            let base_port = free_port_block(3)? - 1;
            let mut command = Command::new(bin);
            command
                .arg("sandbox")
                .args(["--host", "127.0.0.1", "--port", &base_port.to_string()])
                .args(["--sandbox-seed", &seed.to_string()]);
            for (sku, qty) in stock {
                command.args(["--stock", &format!("{sku}={qty}")]);
            }
            command.env("LOG_FORMAT", "json").env("RUST_LOG", "warn");
            let child = spawn(command, dir, &log)?;
            let mut sandbox = Sandbox { child, base_port };
            match sandbox.wait_healthy(http).await {
                Ok(()) => return Ok(sandbox),
                Err(err) => {
                    let _ = sandbox.child.kill().await;
                    last_error = Some(err);
                }
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("the sandbox did not start")))
    }

    async fn wait_healthy(&mut self, http: &reqwest::Client) -> anyhow::Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        for service in Service::ALL {
            let url = format!("{}/health", self.url(service));
            loop {
                if let Some(status) = self.child.try_wait()? {
                    bail!("the sandbox exited at start ({status})");
                }
                if matches!(http.get(&url).send().await, Ok(r) if r.status().is_success()) {
                    break;
                }
                if Instant::now() > deadline {
                    bail!("the sandbox's {} service never answered", service.name());
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Ok(())
    }

    /// The base URL of one service.
    pub fn url(&self, service: Service) -> String {
        let offset = match service {
            Service::Payment => 1,
            Service::Inventory => 2,
            Service::Shipping => 3,
        };
        format!("http://127.0.0.1:{}", self.base_port + offset)
    }

    /// Fails when the sandbox process is gone (its ledger would be lost with it).
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        match self.child.try_wait()? {
            Some(status) => bail!("the sandbox process exited during the run ({status})"),
            None => Ok(()),
        }
    }

    pub async fn stop(&mut self) {
        let _ = self.child.kill().await;
    }
}

/// One order-service process, on a port it keeps across restarts.
pub struct Replica {
    pub index: usize,
    pub port: u16,
    up: AtomicBool,
    starts: AtomicU32,
    child: Mutex<Option<Child>>,
}

/// All replicas, the load balancer's view of which are up, and how to (re)start them.
pub struct Fleet {
    template: ServiceTemplate,
    replicas: Vec<Replica>,
    http: reqwest::Client,
}

impl Fleet {
    /// Starts `count` replicas at once and waits until each is ready.
    pub async fn start(
        template: ServiceTemplate,
        count: usize,
        http: reqwest::Client,
    ) -> anyhow::Result<Self> {
        let replicas = (0..count)
            .map(|index| {
                Ok(Replica {
                    index,
                    port: free_port_block(1)?,
                    up: AtomicBool::new(false),
                    starts: AtomicU32::new(0),
                    child: Mutex::new(None),
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let fleet = Fleet {
            template,
            replicas,
            http,
        };
        let starts = (0..count).map(|i| fleet.start_one(i));
        futures::future::try_join_all(starts).await?;
        Ok(fleet)
    }

    pub fn len(&self) -> usize {
        self.replicas.len()
    }

    pub fn url(&self, index: usize) -> String {
        format!("http://127.0.0.1:{}", self.replicas[index].port)
    }

    pub fn ports(&self) -> Vec<u16> {
        self.replicas.iter().map(|r| r.port).collect()
    }

    /// A random replica believed up, other than `avoid` when another is up.
    pub fn pick(&self, rng: &mut impl Rng, avoid: Option<usize>) -> Option<usize> {
        let live: Vec<usize> = self
            .replicas
            .iter()
            .filter(|r| r.up.load(Ordering::Relaxed))
            .map(|r| r.index)
            .collect();
        let preferred: Vec<usize> = live.iter().copied().filter(|&i| Some(i) != avoid).collect();
        let choices = if preferred.is_empty() {
            &live
        } else {
            &preferred
        };
        (!choices.is_empty()).then(|| choices[rng.random_range(0..choices.len())])
    }

    /// SIGKILLs a replica (it gets no chance to finish anything) and reaps it.
    pub async fn kill(&self, index: usize) -> anyhow::Result<()> {
        let replica = &self.replicas[index];
        replica.up.store(false, Ordering::Relaxed);
        let mut slot = replica.child.lock().await;
        if let Some(mut child) = slot.take() {
            child
                .kill()
                .await
                .with_context(|| format!("killing replica {index}"))?;
        }
        Ok(())
    }

    /// Starts a stopped replica again on its port and waits until it is ready; retried a
    /// few times (the port may be briefly unavailable).
    pub async fn restart(&self, index: usize) -> anyhow::Result<()> {
        let mut last_error = None;
        for _ in 0..10 {
            match self.start_one(index).await {
                Ok(()) => return Ok(()),
                Err(err) => {
                    eprintln!("chaos: replica {index} did not restart: {err:#}; retrying");
                    last_error = Some(err);
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("replica {index} did not restart")))
    }

    /// Replicas that exited without being killed by us (a crash), with how they ended.
    pub async fn exited_on_their_own(&self) -> anyhow::Result<Vec<(usize, ExitStatus)>> {
        let mut exited = Vec::new();
        for replica in &self.replicas {
            let mut slot = replica.child.lock().await;
            if let Some(child) = slot.as_mut()
                && let Some(status) = child.try_wait()?
            {
                replica.up.store(false, Ordering::Relaxed);
                *slot = None;
                exited.push((replica.index, status));
            }
        }
        Ok(exited)
    }

    /// Indexes of replicas with no running process.
    pub async fn stopped(&self) -> Vec<usize> {
        let mut stopped = Vec::new();
        for replica in &self.replicas {
            if replica.child.lock().await.is_none() {
                stopped.push(replica.index);
            }
        }
        stopped
    }

    /// Kills every replica; used at the end of the run.
    pub async fn stop_all(&self) {
        for replica in &self.replicas {
            if let Err(err) = self.kill(replica.index).await {
                eprintln!("chaos: {err:#}");
            }
        }
    }

    async fn start_one(&self, index: usize) -> anyhow::Result<()> {
        let replica = &self.replicas[index];
        let mut slot = replica.child.lock().await;
        if let Some(mut old) = slot.take() {
            let _ = old.kill().await;
        }
        let start = replica.starts.fetch_add(1, Ordering::Relaxed) + 1;
        let log = self.template.dir.join(format!("replica-{index}.log"));
        append_marker(&log, &format!("chaos: start #{start} of replica {index}"))?;
        let mut command = Command::new(&self.template.bin);
        command.arg("serve");
        command.env("HOST", "127.0.0.1");
        command.env("PORT", replica.port.to_string());
        for (name, value) in &self.template.env {
            command.env(name, value);
        }
        let mut child = spawn(command, &self.template.dir, &log)?;
        let url = format!("{}/ready", self.url(index));
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait()? {
                bail!(
                    "replica {index} exited at start ({status}); last log lines:\n{}",
                    tail(&log, 8)
                );
            }
            if matches!(self.http.get(&url).send().await, Ok(r) if r.status().is_success()) {
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill().await;
                bail!("replica {index} was not ready after {READY_TIMEOUT:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        *slot = Some(child);
        replica.up.store(true, Ordering::Relaxed);
        Ok(())
    }
}

/// Spawns `command` in `dir`, in its own process group, output appended to `log`, killed
/// when dropped (so a panic or an early return leaves no process behind).
fn spawn(mut command: Command, dir: &Path, log: &Path) -> anyhow::Result<Child> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("opening {}", log.display()))?;
    command
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::from(file.try_clone()?))
        .stderr(Stdio::from(file))
        .process_group(0)
        .kill_on_drop(true);
    command
        .spawn()
        .with_context(|| format!("starting {:?}", command.as_std().get_program()))
}

fn append_marker(log: &Path, text: &str) -> anyhow::Result<()> {
    let mut file = OpenOptions::new().create(true).append(true).open(log)?;
    writeln!(file, "=== {text} ===")?;
    Ok(())
}

/// The last `lines` lines of a log file, for error messages.
pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The first of `count` consecutive free loopback ports, chosen below the kernel's
/// ephemeral range so that no outgoing connection takes a replica's port while it is down.
fn free_port_block(count: u16) -> anyhow::Result<u16> {
    let (low, high) = ephemeral_range();
    let (from, to) = if low > 12_000 {
        (10_000, low - 1)
    } else {
        (high.saturating_add(1).min(60_000), 65_000)
    };
    let mut rng = rand::rng();
    for _ in 0..200 {
        let first = rng.random_range(from..to.saturating_sub(count));
        let free = (first..first + count)
            .all(|port| std::net::TcpListener::bind(("127.0.0.1", port)).is_ok());
        if free {
            return Ok(first);
        }
    }
    bail!("found no {count} free consecutive ports on 127.0.0.1")
}

fn ephemeral_range() -> (u16, u16) {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| {
            let mut parts = text.split_whitespace().map(str::parse::<u16>);
            Some((parts.next()?.ok()?, parts.next()?.ok()?))
        })
        .unwrap_or((32_768, 60_999))
}
