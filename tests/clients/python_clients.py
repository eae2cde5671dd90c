"""Real Python drivers through Vigil: psycopg 3 (text and binary results,
server-side parameters, pipeline mode, COPY) and asyncpg (binary protocol,
prepared statements, executemany, a transaction).

Run by tests/e2e/clients.rs with VIGIL_PG_PORT, VIGIL_USER and
VIGIL_PASSWORD set; prints one OK line per driver, exits non-zero on any
difference from what PostgreSQL itself would return.
"""

import asyncio
import os
import sys

import asyncpg
import psycopg

PORT = int(os.environ["VIGIL_PG_PORT"])
USER = os.environ["VIGIL_USER"]
PASSWORD = os.environ["VIGIL_PASSWORD"]
TABLE = f"vigil_py_{os.getpid()}"


def check(got, want, what):
    if got != want:
        print(f"FAIL {what}: got {got!r}, want {want!r}")
        sys.exit(1)


def psycopg_checks():
    with psycopg.connect(
        host="127.0.0.1", port=PORT, user=USER, password=PASSWORD, dbname="test",
        autocommit=True,
    ) as conn:
        # Extended protocol with a bound parameter (text format).
        check(conn.execute("SELECT %s::int + 1", (41,)).fetchone(), (42,), "psycopg param")
        # Binary results.
        with conn.cursor(binary=True) as cur:
            cur.execute("SELECT 42::int4, 'vigil'::text, 2.5::float8, NULL::int", ())
            check(cur.fetchone(), (42, "vigil", 2.5, None), "psycopg binary row")
        # Pipeline mode: several statements in flight before any result.
        with conn.pipeline():
            curs = [conn.execute("SELECT %s::int * 10", (i,)) for i in range(5)]
        check([c.fetchone()[0] for c in curs], [0, 10, 20, 30, 40], "psycopg pipeline")
        # An error in the pipeline leaves the connection usable.
        try:
            conn.execute("SELECT 1/0")
            print("FAIL psycopg: division by zero did not raise")
            sys.exit(1)
        except psycopg.errors.DivisionByZero:
            pass
        # COPY both ways.
        conn.execute(f"CREATE TABLE {TABLE}(id int, name text)")
        try:
            with conn.cursor() as cur:
                with cur.copy(f"COPY {TABLE} FROM STDIN") as copy:
                    for row in [(1, "ann"), (2, "ben")]:
                        copy.write_row(row)
                rows = []
                with cur.copy(f"COPY (SELECT * FROM {TABLE} ORDER BY id) TO STDOUT") as copy:
                    for row in copy.rows():
                        rows.append(row)
                check(rows, [("1", "ann"), ("2", "ben")], "psycopg copy")
        finally:
            conn.execute(f"DROP TABLE {TABLE}")
    print("OK psycopg", psycopg.__version__)


async def asyncpg_checks():
    conn = await asyncpg.connect(
        host="127.0.0.1", port=PORT, user=USER, password=PASSWORD, database="test"
    )
    try:
        check(await conn.fetchval("SELECT $1::int * 2", 21), 42, "asyncpg fetchval")
        stmt = await conn.prepare("SELECT $1::text || '!' AS shout")
        check(await stmt.fetchval("hi"), "hi!", "asyncpg prepared")
        await conn.execute(f"CREATE TEMP TABLE {TABLE}(id int, note text)")
        await conn.executemany(
            f"INSERT INTO {TABLE} VALUES ($1, $2)", [(1, "a"), (2, "b"), (3, "c")]
        )
        async with conn.transaction():
            await conn.execute(f"DELETE FROM {TABLE} WHERE id = 2")
        rows = await conn.fetch(f"SELECT id, note FROM {TABLE} ORDER BY id")
        check([tuple(r) for r in rows], [(1, "a"), (3, "c")], "asyncpg rows")
    finally:
        await conn.close()
    print("OK asyncpg", asyncpg.__version__)


psycopg_checks()
asyncio.run(asyncpg_checks())
