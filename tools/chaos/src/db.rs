//! The run's own database: a fresh PostgreSQL schema (dropped at the end) or a fresh SQLite
//! file in the run directory.

use std::path::Path;

use anyhow::Context;
use sqlx::Connection;
use sqlx::postgres::PgConnection;

/// Where the service processes keep their orders during this run.
#[derive(Debug)]
pub enum Database {
    Postgres {
        base_url: String,
        schema: String,
        url: String,
    },
    Sqlite {
        url: String,
    },
}

impl Database {
    /// Creates schema `schema` in the database at `base_url`; the services reach it
    /// through `options[search_path]` in their `DATABASE_URL`.
    pub async fn postgres(base_url: &str, schema: &str) -> anyhow::Result<Self> {
        let mut connection = PgConnection::connect(base_url)
            .await
            .with_context(|| format!("connecting to PostgreSQL at {}", redact(base_url)))?;
        sqlx::query(&format!("CREATE SCHEMA \"{schema}\""))
            .execute(&mut connection)
            .await
            .with_context(|| format!("creating schema {schema}"))?;
        connection.close().await.ok();
        let separator = if base_url.contains('?') { '&' } else { '?' };
        Ok(Database::Postgres {
            base_url: base_url.to_owned(),
            schema: schema.to_owned(),
            url: format!("{base_url}{separator}options[search_path]={schema}"),
        })
    }

    /// A new SQLite file in `dir` (created by the service at its first start).
    pub fn sqlite(dir: &Path) -> Self {
        Database::Sqlite {
            url: format!("sqlite://{}", dir.join("orders.db").display()),
        }
    }

    /// The `DATABASE_URL` of the service processes.
    pub fn url(&self) -> &str {
        match self {
            Database::Postgres { url, .. } | Database::Sqlite { url } => url,
        }
    }

    /// Drops the PostgreSQL schema with everything in it (the SQLite file goes with the
    /// run directory).
    pub async fn drop_schema(&self) -> anyhow::Result<()> {
        if let Database::Postgres {
            base_url, schema, ..
        } = self
        {
            let mut connection = PgConnection::connect(base_url).await?;
            sqlx::query(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
                .execute(&mut connection)
                .await
                .with_context(|| format!("dropping schema {schema}"))?;
            connection.close().await.ok();
        }
        Ok(())
    }

    /// What to print about the database.
    pub fn describe(&self) -> String {
        match self {
            Database::Postgres {
                base_url, schema, ..
            } => format!("PostgreSQL {} schema {schema}", redact(base_url)),
            Database::Sqlite { url } => format!("SQLite {url}"),
        }
    }
}

/// The URL without its password.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_not_printed() {
        assert_eq!(
            redact("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
    }
}
