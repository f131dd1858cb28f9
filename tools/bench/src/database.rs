//! The database of one benchmark run: a new SQLite file in the run's directory, or a new
//! schema in the PostgreSQL server (dropped at the end).

use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use sqlx::postgres::PgConnection;
use sqlx::{Connection, Row};

/// Which database a set of measurements is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    #[serde(rename = "sqlite")]
    Sqlite,
    #[serde(rename = "postgres")]
    Postgres,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Sqlite => "SQLite",
            Kind::Postgres => "PostgreSQL",
        }
    }
}

/// A database made for one run.
#[derive(Debug)]
pub struct Database {
    pub kind: Kind,
    /// The service's `DATABASE_URL`.
    pub url: String,
    /// PostgreSQL: the server URL and the schema to drop.
    postgres: Option<(String, String)>,
    /// e.g. `PostgreSQL 15.8` or `SQLite (WAL), file on tmpfs`.
    pub description: String,
}

impl Database {
    /// A new SQLite file in `dir` (the service creates it).
    pub fn sqlite(dir: &Path) -> Self {
        let file = dir.join("orders.db");
        Database {
            kind: Kind::Sqlite,
            url: format!("sqlite://{}", file.display()),
            postgres: None,
            description: format!("SQLite (WAL), database file on {}", filesystem_of(dir)),
        }
    }

    /// A new schema in the server at `base_url`, reached through `options[search_path]`.
    pub async fn postgres(base_url: &str) -> anyhow::Result<Self> {
        let schema = format!("bench_{}_{:08x}", std::process::id(), rand::random::<u32>());
        let mut connection = PgConnection::connect(base_url)
            .await
            .with_context(|| format!("connecting to PostgreSQL at {}", redact(base_url)))?;
        let version: String = sqlx::query("SHOW server_version")
            .fetch_one(&mut connection)
            .await?
            .try_get(0)?;
        sqlx::query(&format!("CREATE SCHEMA \"{schema}\""))
            .execute(&mut connection)
            .await
            .with_context(|| format!("creating schema {schema}"))?;
        connection.close().await.ok();
        let separator = if base_url.contains('?') { '&' } else { '?' };
        let version = version.split_whitespace().next().unwrap_or("").to_owned();
        Ok(Database {
            kind: Kind::Postgres,
            url: format!("{base_url}{separator}options[search_path]={schema}"),
            postgres: Some((base_url.to_owned(), schema)),
            description: format!("PostgreSQL {version} on this machine"),
        })
    }

    /// Drops the PostgreSQL schema with everything in it (a SQLite file goes with its
    /// directory).
    pub async fn drop(&self) -> anyhow::Result<()> {
        if let Some((base_url, schema)) = &self.postgres {
            let mut connection = PgConnection::connect(base_url).await?;
            sqlx::query(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
                .execute(&mut connection)
                .await
                .with_context(|| format!("dropping schema {schema}"))?;
            connection.close().await.ok();
        }
        Ok(())
    }
}

/// The file system type of `dir` (`tmpfs`, `ext4`, …) from `/proc/mounts`: SQLite's
/// commit cost depends on it.
fn filesystem_of(dir: &Path) -> String {
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_owned());
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (_, mount, kind) = (fields.next()?, fields.next()?, fields.next()?);
            dir.starts_with(mount)
                .then(|| (mount.len(), kind.to_owned()))
        })
        .max()
        .map_or_else(|| "an unknown file system".into(), |(_, kind)| kind)
}

/// The URL without its password.
pub fn redact(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}
