//! The recovery worker: finds sagas whose process died (their lease expired) or that
//! rested after a failed run, claims them, and drives them on from their stored progress:
//! forward while the next step is safe and the deadline holds, else through the
//! compensations. Runs in every `serve` process; many may run against one database.

use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;

use super::{Saga, Start, events};
use crate::domain::when;
use crate::store::StoreError;
use crate::telemetry::metrics;

/// Orders claimed per pass.
const BATCH: u32 = 32;

/// What one pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PassReport {
    /// Orders claimed and driven.
    pub claimed: usize,
    /// Of those, how many ended settled.
    pub settled: usize,
    /// Drives that could not save their progress.
    pub failed: usize,
}

/// Runs recovery passes for one process.
#[derive(Clone)]
pub struct Recovery {
    saga: Saga,
}

impl Recovery {
    pub fn new(saga: Saga) -> Self {
        Self { saga }
    }

    /// Claims every order that is due now (in batches) and drives each to a stop. Tests
    /// call this directly; the worker calls it every interval.
    pub async fn run_once(&self) -> Result<PassReport, StoreError> {
        let mut report = PassReport::default();
        loop {
            let claimed = self
                .saga
                .store()
                .claim_expired(self.saga.lease(), when::now(), BATCH)
                .await?;
            if claimed.is_empty() {
                return Ok(report);
            }
            let full_batch = claimed.len() as u32 == BATCH;
            let mut runs = JoinSet::new();
            for order in claimed {
                metrics::recovery_claim();
                tracing::info!(order_id = %order.id, step = order.progress.step.as_str(), "recovery claimed an unfinished saga");
                let claim = events::decision(
                    "recovery",
                    "claimed",
                    format!("resuming at step {}", order.progress.step.as_str()),
                );
                let request_id = format!("recovery-{}", uuid::Uuid::new_v4().simple());
                runs.spawn(
                    self.saga
                        .spawn_drive(order, Start::Resumed, request_id, vec![claim]),
                );
            }
            while let Some(joined) = runs.join_next().await {
                report.claimed += 1;
                match joined {
                    Ok(Ok(Ok(order))) if order.is_settled() => report.settled += 1,
                    Ok(Ok(Ok(_))) => {}
                    Ok(Ok(Err(error))) => {
                        report.failed += 1;
                        tracing::warn!(%error, "recovered saga could not save its progress");
                    }
                    Ok(Err(error)) | Err(error) => {
                        report.failed += 1;
                        tracing::error!(%error, "recovered saga task failed");
                    }
                }
            }
            if !full_batch {
                return Ok(report);
            }
        }
    }

    /// Runs a pass at start and then every `interval`, until `stop` turns true.
    pub async fn run(self, interval: Duration, mut stop: watch::Receiver<bool>) {
        loop {
            match self.run_once().await {
                Ok(report) if report.claimed > 0 => tracing::info!(
                    claimed = report.claimed,
                    settled = report.settled,
                    failed = report.failed,
                    "recovery pass"
                ),
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "recovery pass failed"),
            }
            tokio::select! {
                _ = stop.wait_for(|stopped| *stopped) => return,
                () = tokio::time::sleep(interval) => {}
            }
        }
    }
}
