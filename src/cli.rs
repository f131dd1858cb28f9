//! The command line: `serve` (the default), `migrate`, `dev` and `sandbox`.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use platform_sandbox::{SandboxArgs, SandboxListeners};
use tokio::net::TcpListener;

use crate::config::{self, Config, DatabaseUrl, ServeArgs};
use crate::store::{Store, StoreSettings};
use crate::{dev, startup, telemetry};

/// Order service for e-commerce platforms: a durable saga over inventory, payment and
/// shipping. Without a subcommand it serves.
#[derive(Parser, Debug)]
#[command(
    name = "order-service",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Serve the API (the default).
    Serve(ServeArgs),
    /// Apply database migrations and exit.
    Migrate(MigrateArgs),
    /// Run the platform sandbox and the service in one process, on SQLite under --data-dir.
    Dev(DevArgs),
    /// Run only the platform sandbox: payment, inventory and shipping on --port + 1, 2, 3.
    Sandbox(SandboxCommandArgs),
    /// Print the OpenAPI document (the one served at /openapi.json) and exit.
    Openapi,
}

#[derive(Args, Debug)]
pub struct MigrateArgs {
    /// The database to migrate (default `sqlite://./data/orders.db`).
    #[arg(long, env = "DATABASE_URL", value_parser = config::parse_database_url_arg, hide_env_values = true)]
    pub database_url: Option<DatabaseUrl>,
}

#[derive(Args, Debug)]
pub struct DevArgs {
    #[command(flatten)]
    pub serve: ServeArgs,
    #[command(flatten)]
    pub sandbox: SandboxArgs,
    /// Directory of the SQLite database.
    #[arg(long, default_value = "./data")]
    pub data_dir: PathBuf,
}

#[derive(Args, Debug)]
pub struct SandboxCommandArgs {
    /// Address to listen on.
    #[arg(long, env = "HOST", default_value = "0.0.0.0")]
    pub host: String,
    /// Base port: the services listen on port + 1 (payment), + 2 (inventory), + 3 (shipping).
    #[arg(long, env = "PORT", default_value_t = 8004)]
    pub port: u16,
    #[command(flatten)]
    pub sandbox: SandboxArgs,
}

/// Runs what the command line asks for.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        None => serve(cli.serve).await,
        Some(Command::Serve(args)) => serve(args).await,
        Some(Command::Migrate(args)) => {
            let _telemetry = telemetry::init(None, telemetry::DEFAULT_FILTER);
            let url = args
                .database_url
                .unwrap_or_else(|| DatabaseUrl::sqlite_file(config::DEFAULT_SQLITE_FILE.as_ref()));
            let store = Store::open(&StoreSettings {
                url: url.expose().to_owned(),
                max_connections: 1,
                sqlite_synchronous: Default::default(),
            })
            .await
            .with_context(|| format!("migrating {}", url.redacted()))?;
            tracing::info!(database = store.dialect(), url = %url.redacted(), "migrations applied");
            Ok(())
        }
        Some(Command::Dev(args)) => {
            let _telemetry = telemetry::init(
                args.serve.log_format.as_deref().or(Some("pretty")),
                telemetry::DEFAULT_FILTER,
            );
            dev::run(args, startup::shutdown_signal()).await
        }
        Some(Command::Openapi) => {
            let document = crate::http::openapi_document()
                .to_pretty_json()
                .context("serializing the OpenAPI document")?;
            println!("{document}");
            Ok(())
        }
        Some(Command::Sandbox(args)) => {
            let _telemetry = telemetry::init(None, telemetry::DEFAULT_FILTER);
            let listeners = SandboxListeners::bind(&args.host, args.port)
                .await
                .with_context(|| format!("binding the sandbox ports {}+1..3", args.port))?;
            tracing::info!(host = %args.host, payment = args.port.saturating_add(1), inventory = args.port.saturating_add(2), shipping = args.port.saturating_add(3), "sandbox listening");
            platform_sandbox::run(
                args.sandbox.into_config(),
                listeners,
                startup::shutdown_signal(),
            )
            .await
        }
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let _telemetry = telemetry::init(args.log_format.as_deref(), telemetry::DEFAULT_FILTER);
    let listener = TcpListener::bind((args.host, args.port))
        .await
        .with_context(|| format!("binding {}:{}", args.host, args.port))?;
    let config = Config::from_args(
        &args,
        DatabaseUrl::sqlite_file(config::DEFAULT_SQLITE_FILE.as_ref()),
    );
    startup::run(config, listener, startup::shutdown_signal()).await
}
