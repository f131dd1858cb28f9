//! After the load: with faults off, clients ask again for every key without a final answer
//! until each has one and no order is pending, within `--settle-timeout`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::api;
use crate::load::Clients;

/// How the settle phase ended.
#[derive(Debug)]
pub struct Settled {
    pub settled: bool,
    pub took: Duration,
    pub unresolved_keys: usize,
    pub pending_orders: usize,
}

pub async fn settle(
    clients: &Arc<Clients>,
    concurrency: usize,
    timeout: Duration,
    seed: u64,
) -> anyhow::Result<Settled> {
    let started = Instant::now();
    let deadline = started + timeout;
    let mut rng = StdRng::seed_from_u64(seed.wrapping_add(99));
    let mut last_report = Instant::now();
    loop {
        let unresolved = clients.journal.unresolved();
        if !unresolved.is_empty() {
            let sends = unresolved.iter().map(|plan| {
                let replica = clients.fleet.pick(&mut rng, None);
                async move {
                    if let Some(replica) = replica {
                        clients.send(plan, replica).await;
                    }
                }
            });
            let sends: Vec<_> = sends.collect();
            futures::stream::iter(sends)
                .buffer_unordered(concurrency.max(1))
                .collect::<Vec<()>>()
                .await;
        }
        let unresolved = clients.journal.unresolved().len();
        let pending = match clients.fleet.pick(&mut rng, None) {
            Some(replica) => {
                api::count_with_status(&clients.http, &clients.fleet.url(replica), "pending")
                    .await
                    .unwrap_or(usize::MAX)
            }
            None => usize::MAX,
        };
        let mut open = 0;
        if unresolved == 0 && pending == 0 {
            // Nothing pending: make sure no order still has a compensation to finish.
            let base = clients
                .fleet
                .pick(&mut rng, None)
                .map(|r| clients.fleet.url(r));
            open = match base {
                Some(base) => api::list_orders(&clients.http, &base, None)
                    .await
                    .map_or(usize::MAX, |orders| {
                        orders.iter().filter(|o| !o.settled()).count()
                    }),
                None => usize::MAX,
            };
        }
        if unresolved == 0 && pending == 0 && open == 0 {
            return Ok(Settled {
                settled: true,
                took: started.elapsed(),
                unresolved_keys: 0,
                pending_orders: 0,
            });
        }
        if Instant::now() >= deadline {
            return Ok(Settled {
                settled: false,
                took: started.elapsed(),
                unresolved_keys: unresolved,
                pending_orders: pending,
            });
        }
        if open > 0 && last_report.elapsed() >= Duration::from_secs(5) {
            eprintln!(
                "chaos: settling: no order pending, but {open} orders have open compensations"
            );
        }
        if last_report.elapsed() >= Duration::from_secs(5) {
            eprintln!(
                "chaos: settling: {unresolved} keys without a final answer, {} pending orders ({:.0}s)",
                if pending == usize::MAX {
                    "?".to_owned()
                } else if pending >= 100 {
                    "100+".to_owned()
                } else {
                    pending.to_string()
                },
                started.elapsed().as_secs_f64()
            );
            last_report = Instant::now();
        }
        let pause = Duration::from_millis(rng.random_range(700..1_300));
        tokio::time::sleep(pause.min(deadline.saturating_duration_since(Instant::now()))).await;
    }
}
