//! `Conn`: one client with its prepared statements, and `Tx`, a transaction on it.
//! Both run SQL text through [`Queries`], which prepares each text once per
//! connection: a statement then costs one round trip instead of two (parse, then
//! execute).

use std::collections::HashMap;

use postgres::types::ToSql;
use postgres::{Client, GenericClient, Row, Statement, Transaction};

type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

/// The queries the backend runs, by SQL text, on a connection or in a transaction.
pub(crate) trait Queries {
    /// Every row.
    fn query(&mut self, sql: &str, params: Params<'_>) -> Result<Vec<Row>, postgres::Error>;
    /// The one row, if any (more than one is an error).
    fn query_opt(&mut self, sql: &str, params: Params<'_>) -> Result<Option<Row>, postgres::Error>;
    /// Exactly one row.
    fn query_one(&mut self, sql: &str, params: Params<'_>) -> Result<Row, postgres::Error>;
    /// The number of rows changed.
    fn execute(&mut self, sql: &str, params: Params<'_>) -> Result<u64, postgres::Error>;
}

/// The statement for `sql`, prepared on first use.
fn prepared(
    client: &mut impl GenericClient,
    cache: &mut HashMap<String, Statement>,
    sql: &str,
) -> Result<Statement, postgres::Error> {
    if let Some(st) = cache.get(sql) {
        return Ok(st.clone());
    }
    let st = client.prepare(sql)?;
    cache.insert(sql.to_owned(), st.clone());
    Ok(st)
}

/// `impl Queries` for a type with `fn parts(&mut self) -> (&mut client, &mut cache)`.
macro_rules! queries_through_cache {
    ($t:ty) => {
        impl Queries for $t {
            fn query(
                &mut self,
                sql: &str,
                params: Params<'_>,
            ) -> Result<Vec<Row>, postgres::Error> {
                let (c, cache) = self.parts();
                let st = prepared(c, cache, sql)?;
                c.query(&st, params)
            }
            fn query_opt(
                &mut self,
                sql: &str,
                params: Params<'_>,
            ) -> Result<Option<Row>, postgres::Error> {
                let (c, cache) = self.parts();
                let st = prepared(c, cache, sql)?;
                c.query_opt(&st, params)
            }
            fn query_one(&mut self, sql: &str, params: Params<'_>) -> Result<Row, postgres::Error> {
                let (c, cache) = self.parts();
                let st = prepared(c, cache, sql)?;
                c.query_one(&st, params)
            }
            fn execute(&mut self, sql: &str, params: Params<'_>) -> Result<u64, postgres::Error> {
                let (c, cache) = self.parts();
                let st = prepared(c, cache, sql)?;
                c.execute(&st, params)
            }
        }
    };
}

/// The client and its prepared statements. The client is closed on a thread of its
/// own: the daemon keeps each worker's store in a thread-local, dropped as the thread
/// ends, and closing a client runs its internal runtime, which needs thread-locals of
/// its own that may already be gone then (the process aborts). A new thread has all
/// of its thread-locals.
pub(crate) struct Conn {
    client: Option<Client>,
    cache: HashMap<String, Statement>,
}

impl Conn {
    pub(crate) fn new(client: Client) -> Conn {
        Conn { client: Some(client), cache: HashMap::new() }
    }

    fn parts(&mut self) -> (&mut Client, &mut HashMap<String, Statement>) {
        // Some from `new` until `drop` takes it.
        (self.client.as_mut().expect("an open client"), &mut self.cache)
    }

    /// The client itself, for what is not cached (the schema, the session settings).
    pub(crate) fn client(&mut self) -> &mut Client {
        self.parts().0
    }

    /// A SERIALIZABLE transaction using this connection's statements.
    pub(crate) fn serializable(&mut self) -> Result<Tx<'_>, postgres::Error> {
        let (client, cache) = self.parts();
        let tx = client
            .build_transaction()
            .isolation_level(postgres::IsolationLevel::Serializable)
            .start()?;
        Ok(Tx { tx, cache })
    }
}

queries_through_cache!(Conn);

impl Drop for Conn {
    fn drop(&mut self) {
        // Statements are closed by the client they belong to: drop them first.
        self.cache.clear();
        let Some(client) = self.client.take() else { return };
        let closing =
            std::thread::Builder::new().name("imd-pg-close".into()).spawn(move || drop(client));
        match closing {
            // Closed by the time the caller goes on: a test that drops its stores and
            // then the database finds no session left.
            Ok(thread) => {
                let _ = thread.join();
            }
            // The socket closes with the process; the server ends the session then.
            Err(e) => log::warn!("store: a PostgreSQL connection left open: {e}"),
        }
    }
}

/// A transaction, with the statements of its connection.
pub(crate) struct Tx<'a> {
    tx: Transaction<'a>,
    cache: &'a mut HashMap<String, Statement>,
}

impl<'a> Tx<'a> {
    fn parts(&mut self) -> (&mut Transaction<'a>, &mut HashMap<String, Statement>) {
        (&mut self.tx, &mut *self.cache)
    }

    pub(crate) fn commit(self) -> Result<(), postgres::Error> {
        self.tx.commit()
    }

    /// Runs `sql` as it is, unprepared: for settings of this transaction (`SET LOCAL`).
    pub(crate) fn batch_execute(&mut self, sql: &str) -> Result<(), postgres::Error> {
        self.tx.batch_execute(sql)
    }
}

queries_through_cache!(Tx<'_>);
