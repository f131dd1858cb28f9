//! The `--stock`, `--fault` and `--sandbox-seed` flags.

use clap::Parser;
use platform_sandbox::{SandboxArgs, Service};

#[derive(Parser, Debug)]
struct Cli {
    #[command(flatten)]
    sandbox: SandboxArgs,
}

fn parse(args: &[&str]) -> Result<SandboxArgs, String> {
    Cli::try_parse_from(std::iter::once("test").chain(args.iter().copied()))
        .map(|cli| cli.sandbox)
        .map_err(|e| e.to_string())
}

#[test]
fn repeated_flags_build_the_config() {
    let args = parse(&[
        "--stock",
        "SKU-001=1000000",
        "--stock",
        "SKU-009=5",
        "--fault",
        r#"payment={"endpoint":"POST /payments","errorRate":0.05}"#,
        "--fault",
        r#"Shipping={"latencyMs":20}"#,
        "--sandbox-seed",
        "9",
    ])
    .unwrap();
    let config = args.into_config();
    assert_eq!(
        config.stock,
        [("SKU-001".to_owned(), 1_000_000), ("SKU-009".to_owned(), 5)]
    );
    assert_eq!(config.faults[0].0, Service::Payment);
    assert_eq!(config.faults[0].1.error_rate, Some(0.05));
    assert_eq!(
        config.faults[0].1.endpoint.as_deref(),
        Some("POST /payments")
    );
    assert_eq!(config.faults[1].0, Service::Shipping);
    assert_eq!(config.faults[1].1.latency_ms, Some(20));
    assert_eq!(config.seed, 9);
}

#[test]
fn defaults_are_no_overrides_no_faults_seed_zero() {
    let config = parse(&[]).unwrap().into_config();
    assert!(config.stock.is_empty() && config.faults.is_empty());
    assert_eq!(config.seed, 0);
}

#[test]
fn non_numeric_quantity_is_a_clear_error() {
    let error = parse(&["--stock", "SKU-1=abc"]).unwrap_err();
    assert!(
        error.contains(
            "invalid value 'SKU-1=abc' for '--stock <SKU=QTY>': quantity must be a non-negative integer"
        ),
        "{error}"
    );
    let error = parse(&["--stock", "SKU-1=-4"]).unwrap_err();
    assert!(
        error.contains("quantity must be a non-negative integer"),
        "{error}"
    );
}

#[test]
fn stock_without_equals_or_sku_is_rejected() {
    let error = parse(&["--stock", "SKU-1"]).unwrap_err();
    assert!(error.contains("expected SKU=QTY"), "{error}");
    let error = parse(&["--stock", "=5"]).unwrap_err();
    assert!(error.contains("must not be empty"), "{error}");
}

#[test]
fn fault_for_unknown_service_names_the_service() {
    let error = parse(&["--fault", r#"orders={"errorRate":0.1}"#]).unwrap_err();
    assert!(error.contains("--fault <SERVICE=JSON>"), "{error}");
    assert!(error.contains("unknown service 'orders'"), "{error}");
}

#[test]
fn fault_with_bad_value_names_the_field() {
    let error = parse(&["--fault", r#"inventory={"errorRate":2}"#]).unwrap_err();
    assert!(
        error.contains("errorRate: Input should be less than or equal to 1"),
        "{error}"
    );
    let error = parse(&["--fault", "payment={not json"]).unwrap_err();
    assert!(error.contains("invalid JSON"), "{error}");
    let error = parse(&["--fault", r#"payment={"endpoint":"POST /reserve"}"#]).unwrap_err();
    assert!(
        error.contains("endpoint: Unknown endpoint 'POST /reserve'"),
        "{error}"
    );
}
