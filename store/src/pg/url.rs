//! [`PostgresUrl`]: where a PostgreSQL database is, checked once at load.

use std::fmt;

use postgres::config::{Host, SslMode};

/// A `postgres://` (or `postgresql://`) URL that parses and asks for nothing this
/// build cannot do (TLS). Shown ([`fmt::Display`], [`fmt::Debug`]) without its
/// password, so it can go into logs and error lines.
#[derive(Clone, PartialEq, Eq)]
pub struct PostgresUrl(String);

impl PostgresUrl {
    /// Checks `url`: the URL form, parseable by the client, and no `sslmode=require`
    /// (connections are plain: run PostgreSQL on the node, a private network or a
    /// Unix socket, `postgres://user@%2Frun%2Fpostgresql/imd`).
    pub fn parse(url: &str) -> Result<PostgresUrl, String> {
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err("must start with postgres:// or postgresql://".into());
        }
        let config: postgres::Config = url.parse().map_err(|e| format!("{e}"))?;
        if config.get_ssl_mode() == SslMode::Require {
            return Err("sslmode=require: TLS to PostgreSQL is not supported".into());
        }
        Ok(PostgresUrl(url.to_owned()))
    }

    /// The URL as given, password included.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PostgresUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Ok(config) = self.0.parse::<postgres::Config>() else {
            return f.write_str("postgres://(unparseable)");
        };
        f.write_str("postgres://")?;
        if let Some(user) = config.get_user() {
            write!(f, "{user}@")?;
        }
        for (i, host) in config.get_hosts().iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            match host {
                Host::Tcp(name) => f.write_str(name)?,
                Host::Unix(dir) => write!(f, "{}", dir.display())?,
            }
            if let Some(port) = config.get_ports().get(i) {
                write!(f, ":{port}")?;
            }
        }
        write!(f, "/{}", config.get_dbname().unwrap_or(""))
    }
}

impl fmt::Debug for PostgresUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PostgresUrl({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_is_checked_and_shown_without_its_password() {
        let url = PostgresUrl::parse("postgres://imd:secret@db.example:5433/imd").unwrap();
        assert_eq!(url.to_string(), "postgres://imd@db.example:5433/imd");
        assert!(!format!("{url:?}").contains("secret"));
        assert_eq!(url.as_str(), "postgres://imd:secret@db.example:5433/imd");
        for bad in [
            "",
            "data/imd.sqlite3",
            "host=localhost dbname=imd",
            "postgres://h/db?sslmode=require",
            "postgres://h:notaport/db",
        ] {
            assert!(PostgresUrl::parse(bad).is_err(), "{bad}");
        }
        assert!(PostgresUrl::parse("postgresql://u@%2Frun%2Fpostgresql/imd").is_ok());
    }
}
