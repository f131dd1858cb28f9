//! The killer: every so often (randomized around `--kill-every`) one random replica gets
//! SIGKILL, and after a short pause is started again on its port and database. Beside it a
//! watchdog notices replicas that died on their own and restarts them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::watch;

use crate::procs::Fleet;

/// What happened to the replicas during the run.
#[derive(Default)]
pub struct KillStats {
    pub kills: AtomicU64,
    pub crashes: std::sync::Mutex<Vec<String>>,
}

/// Kills and restarts replicas until `stop` turns true; returns once the last restart is
/// done, so every replica is up again.
pub async fn run_killer(
    fleet: Arc<Fleet>,
    every: Duration,
    seed: u64,
    stats: Arc<KillStats>,
    mut stop: watch::Receiver<bool>,
    started: Instant,
) -> anyhow::Result<()> {
    if every.is_zero() {
        return Ok(());
    }
    let mut rng = StdRng::seed_from_u64(seed.wrapping_add(77));
    loop {
        let wait = every.mul_f64(rng.random_range(0.5..1.5));
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            _ = stop.wait_for(|stop| *stop) => return Ok(()),
        }
        let Some(victim) = fleet.pick(&mut rng, None) else {
            continue;
        };
        fleet.kill(victim).await?;
        let kills = stats.kills.fetch_add(1, Ordering::Relaxed) + 1;
        let pause = Duration::from_millis(rng.random_range(200..=2_000));
        eprintln!(
            "chaos: [{:>6.1}s] kill -9 replica {victim} (kill #{kills}); restart in {} ms",
            started.elapsed().as_secs_f64(),
            pause.as_millis()
        );
        tokio::time::sleep(pause).await;
        fleet.restart(victim).await?;
    }
}

/// Every half second, restarts replicas that exited although nobody killed them, and
/// records each such crash.
pub async fn run_watchdog(
    fleet: Arc<Fleet>,
    stats: Arc<KillStats>,
    mut stop: watch::Receiver<bool>,
    started: Instant,
) -> anyhow::Result<()> {
    loop {
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = stop.wait_for(|stop| *stop) => return Ok(()),
        }
        for (index, status) in fleet.exited_on_their_own().await? {
            let text = format!(
                "replica {index} exited on its own ({status}) at {:.1}s",
                started.elapsed().as_secs_f64()
            );
            eprintln!("chaos: {text}; restarting it");
            stats.crashes.lock().unwrap().push(text);
            fleet.restart(index).await?;
        }
    }
}
