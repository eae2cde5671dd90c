//! Where result columns come from: table OID and column number (what a
//! `RowDescription` says) to schema, table and column names (what masking
//! rules name).
//!
//! The proxy cannot ask the session's own connection (it is busy relaying
//! the client's conversation), so each proxy keeps one catalog connection per
//! database, logged in with the gateway's credential, and caches answers per
//! table OID. Entries expire after [`TTL`], so a column renamed to a masked
//! name is picked up within that time; renaming *away* from a masked name
//! keeps masking until then, which errs on the safe side. The same
//! connection reads which function names and operator symbols code outside
//! `pg_catalog` defines ([`Shadows`]), for the classifier.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::sync::Mutex;

use vigil_sql::classify::Shadows;
use vigil_sql::lineage::{self, ColumnInfo, RelationInfo, RelationKind, Relations, MAX_VIEW_DEPTH};

use crate::codec;
use crate::login::{self, UpstreamError};
use crate::results;
use crate::server::{read_frame, UpstreamConfig};
use crate::upstream_tls::UpstreamStream;

pub const TTL: Duration = Duration::from_secs(30);

/// A table's schema, name and columns by number.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableInfo {
    pub schema: String,
    pub table: String,
    pub columns: HashMap<i16, String>,
    /// Column types by number (`atttypid`).
    pub types: HashMap<i16, u32>,
    /// A view or materialized view: its columns are computed by its
    /// definition, and lineage follows them to the tables behind it.
    pub is_view: bool,
}

/// Every schema's relation of one name.
type Candidates = Vec<Arc<RelationInfo>>;

/// Relations by name, as lineage asks for them (every schema's relation of
/// a name is a candidate).
#[derive(Debug, Default)]
pub struct NamedRelations(HashMap<String, Vec<Arc<RelationInfo>>>);

impl Relations for NamedRelations {
    fn find(&self, schema: Option<&str>, name: &str) -> Vec<Arc<RelationInfo>> {
        self.0
            .get(name)
            .map(|all| {
                all.iter()
                    .filter(|r| schema.is_none_or(|s| s == r.schema))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("cannot log in for catalog lookups: {0}")]
    Login(#[from] UpstreamError),
    #[error("catalog lookup failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("catalog lookup failed: {0}")]
    Protocol(#[from] codec::CodecError),
    #[error("catalog lookup failed: the server said {0}")]
    Server(String),
    #[error("catalog lookup failed: the server closed the connection")]
    Closed,
    #[error("catalog lookup timed out")]
    Timeout,
}

/// The catalog of one upstream server, shared by all sessions of a proxy.
pub struct Catalog {
    upstream: UpstreamConfig,
    /// A plain lock, held only to look up or insert: every Execute asks
    /// (for the shadows), so no allocation and no await on the way.
    databases: std::sync::Mutex<HashMap<String, Arc<DatabaseCatalog>>>,
}

struct DatabaseCatalog {
    database: String,
    conn: Mutex<Option<(UpstreamStream, BytesMut)>>,
    cache: std::sync::Mutex<HashMap<u32, (Arc<TableInfo>, Instant)>>,
    /// Relations by name (every schema's), for lineage.
    named: std::sync::Mutex<HashMap<String, (Candidates, Instant)>>,
    shadows: std::sync::Mutex<Option<(Arc<Shadows>, Instant)>>,
}

impl Catalog {
    pub fn new(upstream: UpstreamConfig) -> Self {
        Self {
            upstream,
            databases: std::sync::Mutex::new(HashMap::new()),
        }
    }

    /// Which function names and operator symbols code outside `pg_catalog`
    /// defines in `database` (see [`Shadows`]), cached for [`TTL`]. A
    /// lookup that fails gives [`Shadows::unknown`]: statements that call
    /// anything are then unclassified (fail closed).
    pub async fn shadows(&self, database: &str) -> Arc<Shadows> {
        let db = self.database(database);
        if let Some((shadows, at)) = db.shadows.lock().expect("shadows lock").as_ref() {
            if at.elapsed() < TTL {
                return shadows.clone();
            }
        }
        let limit = Duration::from_millis(self.upstream.connect_timeout_ms.max(1) * 2);
        let fetched = tokio::time::timeout(limit, db.fetch_shadows(&self.upstream)).await;
        match fetched {
            Ok(Ok(shadows)) => {
                let shadows = Arc::new(shadows);
                *db.shadows.lock().expect("shadows lock") = Some((shadows.clone(), Instant::now()));
                shadows
            }
            Ok(Err(e)) => {
                tracing::warn!(database, error = %e, "cannot read which functions shadow PostgreSQL's own; statements that call code are refused until it can");
                Arc::new(Shadows::unknown())
            }
            Err(_) => {
                tracing::warn!(
                    database,
                    "reading which functions shadow PostgreSQL's own timed out"
                );
                Arc::new(Shadows::unknown())
            }
        }
    }

    fn database(&self, database: &str) -> Arc<DatabaseCatalog> {
        let mut dbs = self.databases.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(db) = dbs.get(database) {
            return db.clone();
        }
        dbs.entry(database.to_string())
            .or_insert_with(|| {
                Arc::new(DatabaseCatalog {
                    database: database.to_string(),
                    conn: Mutex::new(None),
                    cache: std::sync::Mutex::new(HashMap::new()),
                    named: std::sync::Mutex::new(HashMap::new()),
                    shadows: std::sync::Mutex::new(None),
                })
            })
            .clone()
    }

    /// The tables behind `oids` (0 is skipped). A table that no longer exists
    /// comes back with no columns.
    pub async fn tables(
        &self,
        database: &str,
        oids: &[u32],
    ) -> Result<HashMap<u32, Arc<TableInfo>>, CatalogError> {
        let db = self.database(database);
        let mut found = HashMap::new();
        let mut missing = Vec::new();
        {
            let cache = db.cache.lock().expect("catalog cache lock");
            for &oid in oids {
                if oid == 0 || found.contains_key(&oid) {
                    continue;
                }
                match cache.get(&oid) {
                    Some((info, at)) if at.elapsed() < TTL => {
                        found.insert(oid, info.clone());
                    }
                    _ => missing.push(oid),
                }
            }
        }
        if missing.is_empty() {
            return Ok(found);
        }
        missing.sort_unstable();
        missing.dedup();
        // Bounded: a stalled catalog server must not hold up results for
        // long. On timeout the caller redacts the columns it could not name.
        let limit = Duration::from_millis(self.upstream.connect_timeout_ms.max(1) * 2);
        let fetched = tokio::time::timeout(limit, db.fetch(&self.upstream, &missing))
            .await
            .map_err(|_| CatalogError::Timeout)??;
        let mut cache = db.cache.lock().expect("catalog cache lock");
        let now = Instant::now();
        for oid in missing {
            let info = Arc::new(fetched.get(&oid).cloned().unwrap_or_default());
            cache.insert(oid, (info.clone(), now));
            found.insert(oid, info);
        }
        Ok(found)
    }
}

impl Catalog {
    /// The relations called by `names` (a statement's, see
    /// [`lineage::relation_names`]), and those the views among them read,
    /// through [`MAX_VIEW_DEPTH`] levels of views; cached per name for
    /// [`TTL`].
    pub async fn relations(
        &self,
        database: &str,
        names: impl IntoIterator<Item = String>,
    ) -> Result<NamedRelations, CatalogError> {
        let db = self.database(database);
        let mut found: HashMap<String, Vec<Arc<RelationInfo>>> = HashMap::new();
        let mut wanted: Vec<String> = names.into_iter().collect();
        let limit = Duration::from_millis(self.upstream.connect_timeout_ms.max(1) * 2);
        for _ in 0..=MAX_VIEW_DEPTH {
            wanted.retain(|n| !found.contains_key(n));
            wanted.sort_unstable();
            wanted.dedup();
            if wanted.is_empty() {
                break;
            }
            let mut missing = Vec::new();
            {
                let cache = db.named.lock().expect("catalog cache lock");
                for name in wanted.drain(..) {
                    match cache.get(&name) {
                        Some((rels, at)) if at.elapsed() < TTL => {
                            found.insert(name, rels.clone());
                        }
                        _ => missing.push(name),
                    }
                }
            }
            if !missing.is_empty() {
                let fetched = tokio::time::timeout(limit, db.fetch_named(&self.upstream, &missing))
                    .await
                    .map_err(|_| CatalogError::Timeout)??;
                let mut cache = db.named.lock().expect("catalog cache lock");
                if cache.len() > MAX_NAMED_CACHED {
                    cache.clear();
                }
                let now = Instant::now();
                for name in missing {
                    let rels = fetched.get(&name).cloned().unwrap_or_default();
                    cache.insert(name.clone(), (rels.clone(), now));
                    found.insert(name, rels);
                }
            }
            // What the views found so far read, for the next round.
            for rel in found.values().flatten() {
                if let RelationKind::View(Some(shape)) = &rel.kind {
                    let mut inner = std::collections::BTreeSet::new();
                    lineage::query_relation_names(shape, &mut inner);
                    wanted.extend(inner.into_iter().map(|(_, n)| n));
                }
            }
        }
        Ok(NamedRelations(found))
    }
}

/// Whether a relation of kind `relkind` in `schema` is a view whose columns
/// lineage follows into its definition. PostgreSQL's own views (in
/// `pg_catalog` and `information_schema`) count as tables: they read the
/// system catalogs, and the ones that show data or secrets (`pg_stats`,
/// `pg_settings`, `pg_stat_activity`, ...) are refused by the classifier.
fn is_view_to_follow(relkind: &str, schema: &str) -> bool {
    matches!(relkind, "v" | "m") && !matches!(schema, "pg_catalog" | "information_schema")
}

impl Catalog {
    /// Drops what is cached by name for `database` (a session's DDL has
    /// settled: a name may mean another relation now).
    pub async fn forget_names(&self, database: &str) {
        let db = self.database(database);
        db.named.lock().expect("catalog cache lock").clear();
        db.cache.lock().expect("catalog cache lock").clear();
        // What code the database holds may have changed too (a view, a
        // function, a cast): read it again before the next statement.
        *db.shadows.lock().expect("shadows lock") = None;
    }
}

/// Names cached per database before the cache starts over: statements
/// naming relations that do not exist must not grow it without bound.
const MAX_NAMED_CACHED: usize = 10_000;

impl DatabaseCatalog {
    /// Every table, view and materialized view called one of `names`, in
    /// any schema, with its columns and (for views) its definition's shape.
    async fn fetch_named(
        &self,
        upstream: &UpstreamConfig,
        names: &[String],
    ) -> Result<HashMap<String, Vec<Arc<RelationInfo>>>, CatalogError> {
        // The names come from the client: sent as hex, decoded by the
        // server, so no character of them is ever SQL text.
        let list = names
            .iter()
            .map(|n| format!("'{}'", hex::encode(n.as_bytes())))
            .collect::<Vec<_>>()
            .join(",");
        let sql = format!(
            "SELECT n.nspname, c.relname, c.relkind, a.attnum, a.attname, a.atttypid, \
               CASE WHEN c.relkind IN ('v', 'm') AND a.attnum = 1 \
                 THEN pg_catalog.pg_get_viewdef(c.oid) END \
             FROM pg_catalog.pg_class c \
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid \
               AND a.attnum > 0 AND NOT a.attisdropped \
             WHERE c.relkind IN ('r', 'p', 'f', 'v', 'm') \
               AND c.relname IN (SELECT pg_catalog.convert_from(pg_catalog.decode(x, 'hex'), 'UTF8') \
                 FROM pg_catalog.unnest(ARRAY[{list}]::pg_catalog.text[]) AS x) \
             ORDER BY c.oid, a.attnum"
        );
        let mut rels: Vec<RelationInfo> = Vec::new();
        let mut last: Option<(String, String)> = None;
        for row in self.rows(upstream, &sql).await? {
            let text = |i: usize| row.get(i).cloned().unwrap_or_default();
            let key = (text(0), text(1));
            if last.as_ref() != Some(&key) {
                let kind = if is_view_to_follow(&text(2), &key.0) {
                    RelationKind::View(None)
                } else {
                    RelationKind::Table
                };
                rels.push(RelationInfo {
                    schema: key.0.clone(),
                    name: key.1.clone(),
                    columns: Vec::new(),
                    kind,
                });
                last = Some(key);
            }
            let rel = rels.last_mut().expect("pushed above");
            rel.columns.push(ColumnInfo {
                name: text(4),
                type_oid: text(5).parse().unwrap_or(0),
            });
            let definition = text(6);
            if matches!(rel.kind, RelationKind::View(_)) && !definition.is_empty() {
                rel.kind = RelationKind::View(lineage::view_shape(&definition).map(Arc::new));
            }
        }
        let mut out: HashMap<String, Vec<Arc<RelationInfo>>> = HashMap::new();
        for rel in rels {
            out.entry(rel.name.clone()).or_default().push(Arc::new(rel));
        }
        Ok(out)
    }

    async fn fetch(
        &self,
        upstream: &UpstreamConfig,
        oids: &[u32],
    ) -> Result<HashMap<u32, TableInfo>, CatalogError> {
        let list = oids
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(",");
        // OIDs are numbers the proxy formats itself: nothing from a client is
        // interpolated into this text.
        let sql = format!(
            "SELECT c.oid, n.nspname, c.relname, a.attnum, a.attname, a.atttypid, c.relkind \
             FROM pg_catalog.pg_class c \
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid \
             WHERE c.oid IN ({list}) AND a.attnum > 0 AND NOT a.attisdropped"
        );
        let mut tables: HashMap<u32, TableInfo> = HashMap::new();
        for row in self.rows(upstream, &sql).await? {
            let text = |i: usize| row.get(i).cloned().unwrap_or_default();
            let (Ok(oid), Ok(attnum)) = (text(0).parse::<u32>(), text(3).parse::<i16>()) else {
                continue;
            };
            let entry = tables.entry(oid).or_insert_with(|| TableInfo {
                schema: text(1),
                table: text(2),
                columns: HashMap::new(),
                types: HashMap::new(),
                is_view: is_view_to_follow(&text(6), &text(1)),
            });
            entry.columns.insert(attnum, text(4));
            entry.types.insert(attnum, text(5).parse().unwrap_or(0));
        }
        Ok(tables)
    }

    /// The function names and operator symbols defined outside `pg_catalog`
    /// (and not by an extension), and whether the database holds any code
    /// of its users at all, in this database.
    async fn fetch_shadows(&self, upstream: &UpstreamConfig) -> Result<Shadows, CatalogError> {
        let rows = self.rows(upstream, SHADOWS_QUERY).await?;
        let (mut functions, mut operators, mut attributes) = (Vec::new(), Vec::new(), Vec::new());
        let mut user_code = false;
        for row in rows {
            match (row.first().map(String::as_str), row.get(1)) {
                (Some("f"), Some(name)) => functions.push(name.clone()),
                (Some("o"), Some(name)) => operators.push(name.clone()),
                (Some("a"), Some(name)) => attributes.push(name.clone()),
                (Some("c"), Some(_)) => user_code = true,
                _ => {}
            }
        }
        Ok(Shadows::new(functions, operators, attributes).with_user_code(user_code))
    }

    /// Runs `sql` on the catalog connection and returns its rows as text
    /// (NULL as empty).
    async fn rows(
        &self,
        upstream: &UpstreamConfig,
        sql: &str,
    ) -> Result<Vec<Vec<String>>, CatalogError> {
        let mut conn = self.conn.lock().await;
        // One retry with a fresh connection: the old one may have been closed
        // by the server (idle timeout, restart) since the last lookup.
        for attempt in 0..2 {
            // Taken out while in use: if this lookup is abandoned midway (a
            // timeout), the half-read connection is dropped, not reused.
            let (mut stream, mut buf) = match conn.take() {
                Some(c) => c,
                None => {
                    let params = [("application_name".to_string(), "vigil-catalog".to_string())];
                    let (stream, _) = login::login(upstream, &self.database, &params).await?;
                    (stream, BytesMut::with_capacity(8192))
                }
            };
            match query_rows(&mut stream, &mut buf, sql).await {
                Ok(rows) => {
                    *conn = Some((stream, buf));
                    return Ok(rows);
                }
                Err(e) => {
                    if attempt == 1 || matches!(e, CatalogError::Server(_)) {
                        return Err(e);
                    }
                }
            }
        }
        Err(CatalogError::Closed)
    }
}

/// Function names and operator symbols of every schema but `pg_catalog`,
/// leaving out extensions' members (`pg_depend` type `e`), and the name of
/// every function outside `pg_catalog` (attribute notation `p.f` reaches
/// any that one argument can call: a row type, `record`, a polymorphic
/// type, defaults, VARIADIC; extensions' too). And one row `c` if the
/// database holds any code its users made, which a read could run without
/// naming it: a function, a cast, an operator, a domain constraint, a view
/// or rule, a foreign table, a table under row security (objects initdb did
/// not create have OIDs from 16384 on). Then no read is a free read.
const SHADOWS_QUERY: &str = "\
    SELECT DISTINCT 'f', p.proname FROM pg_catalog.pg_proc p \
    WHERE p.pronamespace <> 'pg_catalog'::pg_catalog.regnamespace \
      AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d \
        WHERE d.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass AND d.objid = p.oid AND d.deptype = 'e') \
    UNION ALL \
    SELECT DISTINCT 'o', o.oprname FROM pg_catalog.pg_operator o \
    WHERE o.oprnamespace <> 'pg_catalog'::pg_catalog.regnamespace \
      AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d \
        WHERE d.classid = 'pg_catalog.pg_operator'::pg_catalog.regclass AND d.objid = o.oid AND d.deptype = 'e') \
    UNION ALL \
    SELECT DISTINCT 'a', p.proname FROM pg_catalog.pg_proc p \
    WHERE p.pronamespace <> 'pg_catalog'::pg_catalog.regnamespace \
    UNION ALL \
    SELECT 'c', 'user code' WHERE \
      EXISTS (SELECT 1 FROM pg_catalog.pg_proc WHERE oid >= 16384) \
      OR EXISTS (SELECT 1 FROM pg_catalog.pg_cast WHERE oid >= 16384) \
      OR EXISTS (SELECT 1 FROM pg_catalog.pg_operator WHERE oid >= 16384) \
      OR EXISTS (SELECT 1 FROM pg_catalog.pg_constraint WHERE oid >= 16384 AND contypid <> 0) \
      OR EXISTS (SELECT 1 FROM pg_catalog.pg_rewrite WHERE oid >= 16384) \
      OR EXISTS (SELECT 1 FROM pg_catalog.pg_class WHERE oid >= 16384 \
        AND (relkind = 'f' OR relrowsecurity))";

async fn query_rows(
    stream: &mut UpstreamStream,
    buf: &mut BytesMut,
    sql: &str,
) -> Result<Vec<Vec<String>>, CatalogError> {
    stream.write_all(&codec::query(sql)).await?;
    let mut rows = Vec::new();
    let mut error = None;
    loop {
        let frame = read_frame(stream, buf).await?.ok_or(CatalogError::Closed)?;
        match frame.tag {
            b'D' => {
                let body = frame.body();
                let values = results::data_row_values(&body)?;
                rows.push(
                    values
                        .into_iter()
                        .map(|v| {
                            v.map(|r| String::from_utf8_lossy(&body[r]).into_owned())
                                .unwrap_or_default()
                        })
                        .collect(),
                );
            }
            b'E' => {
                let fields = codec::parse_error_fields(frame.body())?;
                error = Some(format!("{}: {}", fields.code, fields.message));
            }
            b'Z' => break,
            _ => {}
        }
    }
    match error {
        Some(e) => Err(CatalogError::Server(e)),
        None => Ok(rows),
    }
}
