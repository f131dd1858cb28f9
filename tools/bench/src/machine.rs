//! What the numbers were measured on: cores, CPU, kernel, memory, build, commit.

use std::path::Path;
use std::process::Command;

use serde::{Deserialize, Serialize};

/// The machine and the build, as printed above the tables.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Machine {
    /// Cores this process may use (what `nproc` prints).
    pub cores: usize,
    pub cpu_model: String,
    pub kernel: String,
    pub memory_gib: f64,
    /// 1-minute load average when the benchmark started.
    pub load_average: String,
    /// `release` or `debug`: the directory the `order-service` binary was built in.
    pub service_profile: String,
    /// When the `order-service` binary was written (its modification time).
    pub service_built: String,
    /// How this benchmark (and so the load generator) was built.
    pub loadgen_profile: String,
    /// `git describe`-like: the commit, and whether the work tree had changes.
    pub commit: Option<String>,
    pub date: String,
}

impl Machine {
    /// Reads `/proc` and asks git; whatever cannot be read is `unknown`.
    pub fn inspect(binary: &Path) -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|line| {
                let (key, value) = line.split_once(':')?;
                (key.trim() == "model name").then(|| value.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown".into());
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|text| format!("Linux {}", text.trim()))
            .unwrap_or_else(|_| "unknown".into());
        let memory_gib = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|text| {
                let line = text.lines().find(|line| line.starts_with("MemTotal:"))?;
                let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
                Some(kib / 1024.0 / 1024.0)
            })
            .unwrap_or(0.0);
        let load_average = std::fs::read_to_string("/proc/loadavg")
            .ok()
            .and_then(|text| text.split_whitespace().next().map(str::to_owned))
            .unwrap_or_else(|| "unknown".into());
        let service_profile = binary
            .parent()
            .and_then(Path::file_name)
            .map(|name| name.to_string_lossy().into_owned())
            .filter(|name| name == "release" || name == "debug")
            .unwrap_or_else(|| "unknown".into());
        Machine {
            cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
            cpu_model,
            kernel,
            memory_gib,
            load_average,
            service_profile,
            service_built: std::fs::metadata(binary)
                .and_then(|meta| meta.modified())
                .map(|time| {
                    chrono::DateTime::<chrono::Utc>::from(time)
                        .format("%Y-%m-%d %H:%M UTC")
                        .to_string()
                })
                .unwrap_or_else(|_| "unknown".into()),
            loadgen_profile: if cfg!(debug_assertions) {
                "debug".into()
            } else {
                "release".into()
            },
            commit: commit(),
            date: chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
        }
    }
}

/// The commit of the source tree this benchmark was built from.
fn commit() -> Option<String> {
    let tree = env!("CARGO_MANIFEST_DIR");
    let head = Command::new("git")
        .args(["-C", tree, "rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .filter(|output| output.status.success())?;
    let head = String::from_utf8_lossy(&head.stdout).trim().to_owned();
    let dirty = Command::new("git")
        .args(["-C", tree, "status", "--porcelain", "--untracked-files=no"])
        .output()
        .ok()
        .is_some_and(|output| !output.stdout.is_empty());
    Some(if dirty {
        format!("{head} with uncommitted changes")
    } else {
        head
    })
}
