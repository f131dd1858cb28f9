//! `order-service dev`: the platform sandbox and the order service in one process, on
//! SQLite under `--data-dir`, with a banner that tells how to use it.

use std::future::Future;

use anyhow::Context;
use platform_sandbox::SandboxListeners;
use tokio::net::TcpListener;

use crate::cli::DevArgs;
use crate::config::{Config, DatabaseUrl};
use crate::startup::Application;

/// Runs the demo until `shutdown` completes.
pub async fn run(
    args: DevArgs,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let host = args.serve.host;
    let listener = TcpListener::bind((host, args.serve.port))
        .await
        .with_context(|| format!("binding the order service to {host}:{}", args.serve.port))?;
    let base_port = if args.serve.port == 0 {
        0
    } else {
        args.serve.port
    };
    let sandbox_listeners = SandboxListeners::bind(&host.to_string(), base_port)
        .await
        .with_context(|| format!("binding the sandbox ports {base_port}+1..3"))?;
    let sandbox = platform_sandbox::spawn(args.sandbox.into_config(), sandbox_listeners);

    let mut serve = args.serve.clone();
    serve.inventory_url = sandbox.inventory_url.clone();
    serve.payment_url = sandbox.payment_url.clone();
    serve.shipping_url = sandbox.shipping_url.clone();
    let db_file = args.data_dir.join("orders.db");
    let config = Config::from_args(&serve, DatabaseUrl::sqlite_file(&db_file));
    let database = config.database_url.redacted();
    let app = Application::build(config, listener).await?;
    let port = app.local_addr()?.port();
    println!("{}", banner(port, &database, &sandbox));
    let result = app.run_until_stopped(shutdown).await;
    sandbox.shutdown().await;
    result
}

fn banner(port: u16, database: &str, sandbox: &platform_sandbox::RunningSandbox) -> String {
    let orders = format!("http://127.0.0.1:{port}");
    format!(
        r#"
order-service dev is running
  orders     {orders}   (database: {database})
  payment    {payment}
  inventory  {inventory}
  shipping   {shipping}
  faults     POST <service>/_sandbox/faults   ledger: GET <service>/_sandbox/ledger

Try:
  curl -s -X POST {orders}/orders \
    -H 'Content-Type: application/json' -H 'Idempotency-Key: demo-1' \
    -d '{{"userId":"u-1","address":{{"line1":"1 MG Road","city":"Pune","country":"IN","postalCode":"411001"}},"items":[{{"sku":"SKU-001","qty":2,"price":499.99}}]}}'

Press Ctrl-C to stop.
"#,
        payment = sandbox.payment_url,
        inventory = sandbox.inventory_url,
        shipping = sandbox.shipping_url,
    )
}
