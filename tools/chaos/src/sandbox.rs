//! Talking to the sandbox's admin routes: turning faults on and off, and reading the three
//! ledgers the invariants are checked against.

use anyhow::{Context, bail};
use platform_sandbox::FaultView;
use platform_sandbox::ledger::{FaultCounts, InventoryLedger, PaymentLedger, ShippingLedger};
use serde_json::{Value, json};

use crate::cli::Args;
use crate::procs::{Sandbox, Service};

/// The state of all three services at one moment.
#[derive(Clone, Debug)]
pub struct Ledgers {
    pub inventory: InventoryLedger,
    pub payment: PaymentLedger,
    pub shipping: ShippingLedger,
}

impl Ledgers {
    /// Faults that changed what a request did (errors, hangs, lost answers, declines);
    /// added latency is not counted.
    pub fn faults_injected(&self) -> u64 {
        self.fault_counts()
            .iter()
            .map(|c| c.error + c.hang + c.drop_response + c.decline)
            .sum()
    }

    /// One line per kind, over the three services, for the log.
    pub fn fault_breakdown(&self) -> String {
        let counts = self.fault_counts();
        let sum = |f: fn(&FaultCounts) -> u64| counts.iter().map(f).sum::<u64>();
        format!(
            "latency={} error={} hang={} dropResponse={} decline={} idempotentReplay={}",
            sum(|c| c.latency),
            sum(|c| c.error),
            sum(|c| c.hang),
            sum(|c| c.drop_response),
            sum(|c| c.decline),
            sum(|c| c.idempotent_replay),
        )
    }

    fn fault_counts(&self) -> [FaultCounts; 3] {
        [
            self.inventory.faults_injected,
            self.payment.faults_injected,
            self.shipping.faults_injected,
        ]
    }
}

/// The fault bodies the run posts, one per service (service-wide scope), from the flags.
pub fn fault_bodies(args: &Args, seed: u64) -> Vec<(Service, Value)> {
    Service::ALL
        .iter()
        .enumerate()
        .map(|(i, &service)| {
            let mut body = json!({
                "latencyMs": args.latency_ms,
                "jitterMs": args.jitter_ms,
                "errorRate": args.error_rate,
                "errorStatus": match service {
                    Service::Inventory => 503,
                    Service::Payment => 500,
                    Service::Shipping => 502,
                },
                "hangRate": args.hang_rate,
                "dropResponseRate": args.drop_rate,
                "seed": seed.wrapping_add(i as u64 + 1),
            });
            if service == Service::Payment {
                body["declineRate"] = json!(args.decline_rate);
            }
            (service, body)
        })
        .collect()
}

/// The body that turns every fault of a service-wide scope off again.
fn quiet_body(service: Service) -> Value {
    let mut body = json!({
        "latencyMs": 0, "jitterMs": 0, "errorRate": 0.0,
        "hangRate": 0.0, "dropResponseRate": 0.0,
    });
    if service == Service::Payment {
        body["declineRate"] = json!(0.0);
    }
    body
}

/// Admin calls on the sandbox.
pub struct SandboxAdmin<'a> {
    pub http: &'a reqwest::Client,
    pub sandbox: &'a Sandbox,
}

impl SandboxAdmin<'_> {
    /// Turns `POST /reserve`'s honour-Idempotency-Key mode on; it stays on when the faults
    /// are cleared, since the service relies on it.
    pub async fn honor_reserve_keys(&self) -> anyhow::Result<()> {
        self.post_faults(
            Service::Inventory,
            &json!({"endpoint": "POST /reserve", "honorIdempotencyKey": true}),
        )
        .await
    }

    pub async fn inject(&self, bodies: &[(Service, Value)]) -> anyhow::Result<()> {
        for (service, body) in bodies {
            self.post_faults(*service, body).await?;
        }
        Ok(())
    }

    /// Turns every fault off. Service-wide settings are zeroed rather than deleted so
    /// that `POST /reserve`'s honour mode (an endpoint setting) stays as it was; the
    /// effective settings are read back to be sure.
    pub async fn clear(&self) -> anyhow::Result<()> {
        for service in Service::ALL {
            self.post_faults(service, &quiet_body(service)).await?;
            let view: FaultView = self
                .http
                .get(format!("{}/_sandbox/faults", self.sandbox.url(service)))
                .send()
                .await?
                .json()
                .await
                .context("reading GET /_sandbox/faults")?;
            let loud: Vec<&String> = view
                .effective
                .iter()
                .filter(|(_, e)| {
                    e.latency_ms > 0
                        || e.jitter_ms > 0
                        || e.error_rate > 0.0
                        || e.hang_rate > 0.0
                        || e.drop_response_rate > 0.0
                        || e.decline_rate > 0.0
                })
                .map(|(endpoint, _)| endpoint)
                .collect();
            if !loud.is_empty() {
                bail!(
                    "faults still on after clearing {}: {loud:?}",
                    service.name()
                );
            }
        }
        Ok(())
    }

    async fn post_faults(&self, service: Service, body: &Value) -> anyhow::Result<()> {
        let response = self
            .http
            .post(format!("{}/_sandbox/faults", self.sandbox.url(service)))
            .json(body)
            .send()
            .await
            .with_context(|| format!("POST /_sandbox/faults on {}", service.name()))?;
        if !response.status().is_success() {
            let status = response.status();
            let text = response.text().await.unwrap_or_default();
            bail!(
                "POST /_sandbox/faults on {} answered {status}: {text}",
                service.name()
            );
        }
        Ok(())
    }

    pub async fn ledgers(&self) -> anyhow::Result<Ledgers> {
        Ok(Ledgers {
            inventory: self.ledger(Service::Inventory).await?,
            payment: self.ledger(Service::Payment).await?,
            shipping: self.ledger(Service::Shipping).await?,
        })
    }

    async fn ledger<T: serde::de::DeserializeOwned>(&self, service: Service) -> anyhow::Result<T> {
        let response = self
            .http
            .get(format!("{}/_sandbox/ledger", self.sandbox.url(service)))
            .send()
            .await
            .with_context(|| format!("GET /_sandbox/ledger on {}", service.name()))?;
        if !response.status().is_success() {
            bail!(
                "GET /_sandbox/ledger on {} answered {}",
                service.name(),
                response.status()
            );
        }
        response
            .json()
            .await
            .with_context(|| format!("reading the {} ledger", service.name()))
    }
}
