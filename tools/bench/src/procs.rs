//! The processes under test: starting, health-waiting and stopping them, and reading
//! their CPU time and memory from `/proc`.

use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::process::{Child, Command};

/// A started `order-service` process whose output goes to a log file.
#[derive(Debug)]
pub struct Process {
    pub name: &'static str,
    child: Child,
    pid: u32,
    log: PathBuf,
}

impl Process {
    /// Starts `binary args` in `cwd` with exactly `env` (plus `PATH`), so that neither
    /// the caller's environment nor a `.env` file changes what is measured.
    pub fn start(
        name: &'static str,
        binary: &Path,
        args: &[String],
        env: &[(String, String)],
        cwd: &Path,
    ) -> anyhow::Result<Self> {
        let log = cwd.join(format!("{name}.log"));
        let out = File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let mut command = Command::new(binary);
        command
            .args(args)
            .current_dir(cwd)
            .env_clear()
            .envs(std::env::var_os("PATH").map(|path| ("PATH", path)))
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            // If the benchmark dies, its processes die with it.
            .kill_on_drop(true);
        let child = command
            .spawn()
            .with_context(|| format!("starting {} ({name})", binary.display()))?;
        let pid = child.id().context("the process has no id")?;
        Ok(Process {
            name,
            child,
            pid,
            log,
        })
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Fails when the process has exited, with the end of its log.
    pub fn ensure_running(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!(
                "{} exited ({status}); the end of its log:\n{}",
                self.name,
                self.log_tail(20)
            );
        }
        Ok(())
    }

    /// Polls `url` until it answers 200, the process exits, or `timeout` passes.
    pub async fn wait_healthy(
        &mut self,
        client: &reqwest::Client,
        url: &str,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            self.ensure_running()?;
            if let Ok(response) = client.get(url).send().await
                && response.status() == reqwest::StatusCode::OK
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "{} did not answer GET {url} within {timeout:?}; the end of its log:\n{}",
                    self.name,
                    self.log_tail(20)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGTERM, then SIGKILL after `grace`.
    pub async fn stop(&mut self, grace: Duration) -> anyhow::Result<ExitStatus> {
        if let Some(status) = self.child.try_wait()? {
            return Ok(status);
        }
        // `kill` rather than a libc call: this workspace forbids `unsafe`.
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status();
        match tokio::time::timeout(grace, self.child.wait()).await {
            Ok(status) => Ok(status?),
            Err(_) => {
                eprintln!(
                    "bench: {} did not stop within {grace:?}; killing it",
                    self.name
                );
                self.child.kill().await?;
                Ok(self.child.wait().await?)
            }
        }
    }

    /// User + system CPU seconds used so far.
    pub fn cpu_seconds(&self) -> anyhow::Result<f64> {
        cpu_seconds(&format!("/proc/{}/stat", self.pid))
    }

    /// Resident memory now and its peak (`VmRSS`, `VmHWM`), in KiB.
    pub fn memory(&self) -> anyhow::Result<Memory> {
        memory(self.pid)
    }

    /// The last `lines` lines of the process's output.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

/// Resident memory of a process, KiB.
#[derive(Debug, Clone, Copy, Default)]
pub struct Memory {
    pub rss_kib: u64,
    pub peak_kib: u64,
}

/// Reads `VmRSS` and `VmHWM` of `pid`.
pub fn memory(pid: u32) -> anyhow::Result<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| -> Option<u64> {
        let line = status.lines().find(|line| line.starts_with(name))?;
        line.split_whitespace().nth(1)?.parse().ok()
    };
    Ok(Memory {
        rss_kib: field("VmRSS:").context("no VmRSS")?,
        peak_kib: field("VmHWM:").context("no VmHWM")?,
    })
}

/// User + system CPU seconds of the process whose `stat` file this is
/// (`/proc/self/stat` for this one).
pub fn cpu_seconds(stat_path: &str) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(stat_path)?;
    // The command name (field 2) may hold spaces; the fields after it do not.
    let after_name = &stat[stat.rfind(')').context("malformed stat")? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // Fields 14 and 15 of the file; field 3 is the first after the name.
    let utime: f64 = fields.get(11).context("no utime")?.parse()?;
    let stime: f64 = fields.get(12).context("no stime")?.parse()?;
    Ok((utime + stime) / clock_ticks())
}

/// CPU seconds of the whole machine, all cores together, from `/proc/stat`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MachineCpu {
    /// Running anything here (not idle, not waiting for I/O).
    pub busy: f64,
    /// Taken by the hypervisor ("steal": for other guests, or for the host's side of this
    /// guest's disk writes): on a shared VM the benchmark had that much less CPU than the
    /// core count says.
    pub stolen: f64,
}

impl MachineCpu {
    /// What `/proc/stat` says right now.
    pub fn now() -> anyhow::Result<Self> {
        Self::parse(&std::fs::read_to_string("/proc/stat")?, clock_ticks())
    }

    /// The machine's first (`cpu`) line of a `/proc/stat` text, in `ticks` per second.
    fn parse(stat: &str, ticks_per_second: f64) -> anyhow::Result<Self> {
        let line = stat.lines().next().context("empty /proc/stat")?;
        let ticks: Vec<f64> = line
            .split_whitespace()
            .skip(1)
            .take(8)
            .map(str::parse)
            .collect::<Result<_, _>>()?;
        // user nice system idle iowait irq softirq steal (guest time is inside user).
        let [user, nice, system, _idle, _iowait, irq, softirq, steal] = ticks[..] else {
            anyhow::bail!("unexpected /proc/stat: {line}");
        };
        Ok(Self {
            busy: (user + nice + system + irq + softirq) / ticks_per_second,
            stolen: steal / ticks_per_second,
        })
    }
}

/// `getconf CLK_TCK` (100 on every Linux we know of; asked once, not assumed).
fn clock_ticks() -> f64 {
    static TICKS: OnceLock<f64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|out| String::from_utf8_lossy(&out.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// A loopback port `p` with `p..p + count` all free right now.
pub fn free_port_block(count: u16) -> anyhow::Result<u16> {
    for _ in 0..200 {
        let base: u16 = rand::random_range(20_000..60_000);
        let listeners: Result<Vec<_>, _> = (0..count)
            .map(|offset| TcpListener::bind(("127.0.0.1", base + offset)))
            .collect();
        if listeners.is_ok() {
            return Ok(base);
        }
    }
    bail!("found no {count} free consecutive loopback ports")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_cpu_time_and_memory() {
        let spent: u64 = (0..5_000_000u64).fold(0, |acc, x| acc.wrapping_add(x * x));
        assert!(spent > 0);
        assert!(cpu_seconds("/proc/self/stat").unwrap() >= 0.0);
        let memory = memory(std::process::id()).unwrap();
        assert!(memory.rss_kib > 0 && memory.peak_kib >= memory.rss_kib);
        assert!(MachineCpu::now().unwrap().busy > 0.0);
    }

    #[test]
    fn steal_is_counted_apart_from_busy_time() {
        let stat = "cpu  700 10 200 5000 40 5 85 300 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n";
        let cpu = MachineCpu::parse(stat, 100.0).unwrap();
        assert_eq!(
            cpu,
            MachineCpu {
                busy: 10.0,
                stolen: 3.0
            }
        );
        assert!(MachineCpu::parse("cpu 1 2 3\n", 100.0).is_err());
    }
}
