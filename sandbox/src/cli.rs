//! Command-line flags for starting the sandbox, shared by the order service's `sandbox` and
//! `dev` subcommands.

use crate::Service;
use crate::config::SandboxConfig;
use crate::faults::FaultSettings;

/// Flags that configure the platform sandbox.
#[derive(clap::Args, Debug, Clone)]
pub struct SandboxArgs {
    /// Stock level of a SKU, on top of (or overriding) the seed stock SKU-001=100,
    /// SKU-002=250, SKU-003=500; repeatable.
    #[arg(long = "stock", value_name = "SKU=QTY", value_parser = parse_stock)]
    pub stock: Vec<(String, u64)>,
    /// Faults to inject from the start: the `/_sandbox/faults` body for one service, e.g.
    /// 'payment={"endpoint":"POST /payments","errorRate":0.05}'; repeatable.
    #[arg(long = "fault", value_name = "SERVICE=JSON", value_parser = parse_fault)]
    pub faults: Vec<(Service, FaultSettings)>,
    /// Seed of the fault RNGs, so a run with random faults can be repeated.
    #[arg(long = "sandbox-seed", default_value_t = 0)]
    pub seed: u64,
}

impl SandboxArgs {
    /// The configuration these flags describe.
    pub fn into_config(self) -> SandboxConfig {
        SandboxConfig {
            stock: self.stock,
            faults: self.faults,
            seed: self.seed,
        }
    }
}

/// Parses `SKU=QTY`.
pub fn parse_stock(value: &str) -> Result<(String, u64), String> {
    let (sku, qty) = value
        .split_once('=')
        .ok_or("expected SKU=QTY, e.g. SKU-001=100")?;
    let sku = sku.trim();
    if sku.is_empty() {
        return Err("the SKU before '=' must not be empty".into());
    }
    let qty = qty
        .trim()
        .parse::<u64>()
        .map_err(|_| "quantity must be a non-negative integer".to_owned())?;
    Ok((sku.to_owned(), qty))
}

/// Parses `SERVICE=JSON`, validating the JSON as the service's admin route would.
pub fn parse_fault(value: &str) -> Result<(Service, FaultSettings), String> {
    let (service, json) = value
        .split_once('=')
        .ok_or(r#"expected SERVICE=JSON, e.g. payment={"errorRate":0.05}"#)?;
    let service: Service = service.parse().map_err(|e| format!("{e}"))?;
    let settings = FaultSettings::parse_str(json, service).map_err(|e| e.to_string())?;
    Ok((service, settings))
}
