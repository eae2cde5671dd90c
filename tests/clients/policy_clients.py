"""Real Python drivers through Vigil under the shipped PHI policy: refusals
arrive as SQLSTATE 42501 at Parse time (psycopg's prepared statements,
asyncpg's prepare), a row limit holds across chunked fetches of one portal, a refusal inside a pipeline leaves what ran before it and
skips what follows exactly as a PostgreSQL error would, and masked values
arrive in text and binary result formats (asyncpg never sends Describe
before Execute for a cached statement, psycopg binary cursors ask for binary
results).

Run by tests/e2e/policy.rs with VIGIL_PG_PORT, VIGIL_USER, VIGIL_PASSWORD and
VIGIL_TABLE (a table with rows (1, ssn '123-45-6789', member_id 42) and
(2, ssn '234-56-7890', member_id 43)); prints one OK line per driver.
"""

import asyncio
import os
import sys

import asyncpg
import psycopg
from psycopg import errors

PORT = int(os.environ["VIGIL_PG_PORT"])
USER = os.environ["VIGIL_USER"]
PASSWORD = os.environ["VIGIL_PASSWORD"]
TABLE = os.environ["VIGIL_TABLE"]


def check(got, want, what):
    if got != want:
        print(f"FAIL {what}: got {got!r}, want {want!r}")
        sys.exit(1)


def psycopg_checks():
    with psycopg.connect(
        host="127.0.0.1", port=PORT, user=USER, password=PASSWORD, dbname="test",
        autocommit=True,
    ) as conn:
        # Text results, extended protocol: masked by the ssn column rule.
        row = conn.execute(f"SELECT ssn, name FROM {TABLE} WHERE id = %s", (1,)).fetchone()
        check(row, ("***-**-6789", "Jane Roe"), "psycopg text masked")
        # Binary results: the same masking, and an int column under `partial`
        # becomes NULL (a masked string cannot be an int).
        with conn.cursor(binary=True) as cur:
            cur.execute(f"SELECT ssn AS a, member_id, id FROM {TABLE} WHERE id = %s", (2,))
            check(cur.fetchone(), ("***-**-7890", None, 2), "psycopg binary masked")
        # A prepared statement refused at Parse.
        try:
            conn.execute(f"TRUNCATE {TABLE}", prepare=True)
            print("FAIL psycopg: TRUNCATE was not refused")
            sys.exit(1)
        except errors.InsufficientPrivilege as e:
            check("deny-destructive" in str(e), True, f"psycopg refusal names the rule: {e}")
        # The connection is still usable.
        check(conn.execute("SELECT 1").fetchone(), (1,), "psycopg after refusal")

        # A refusal in the middle of a pipeline: before it runs, after it is
        # skipped, as with any PostgreSQL error in a pipeline.
        conn.autocommit = False
        results = []
        try:
            with conn.pipeline():
                c1 = conn.execute("SELECT %s::int", (1,))
                c2 = conn.execute(f"DROP TABLE {TABLE}", ())
                c3 = conn.execute("SELECT %s::int", (3,))
                conn.commit()
        except errors.InsufficientPrivilege:
            results.append("refused")
        except psycopg.Error as e:
            print(f"FAIL psycopg pipeline: unexpected {type(e).__name__}: {e}")
            sys.exit(1)
        conn.rollback()
        check(results, ["refused"], "psycopg pipeline refusal")
        conn.autocommit = True
        check(conn.execute("SELECT to_regclass(%s) IS NOT NULL", (TABLE,)).fetchone(), (True,),
              "table survived the pipeline")
    print("OK psycopg policy")


async def asyncpg_checks():
    conn = await asyncpg.connect(
        host="127.0.0.1", port=PORT, user=USER, password=PASSWORD, database="test",
    )
    try:
        # asyncpg prepares once, then binds and executes without Describe:
        # the proxy asks for the description itself, so masking still holds.
        stmt = await conn.prepare(f"SELECT id, ssn FROM {TABLE} WHERE id = $1")
        for _ in range(3):
            check(await stmt.fetchrow(1), (1, "***-**-6789"), "asyncpg masked")
        check(await conn.fetchval(f"SELECT member_id FROM {TABLE} WHERE id = $1", 1), None,
              "asyncpg binary int under partial")
        try:
            await conn.execute(f"ALTER TABLE {TABLE} DROP COLUMN notes")
            print("FAIL asyncpg: ALTER ... DROP COLUMN was not refused")
            sys.exit(1)
        except asyncpg.exceptions.InsufficientPrivilegeError as e:
            check("deny-destructive" in str(e), True, f"asyncpg refusal: {e}")
        check(await conn.fetchval("SELECT 2"), 2, "asyncpg after refusal")
        # Fetching a big result in chunks of 100 rows (Execute with a row
        # count, PortalSuspended, Execute again) does not dodge the row
        # limit of 1000: the portal's rows add up.
        seen = 0
        try:
            async with conn.transaction():
                async for _ in conn.cursor("SELECT g FROM generate_series(1, 5000) g", prefetch=100):
                    seen += 1
            print("FAIL asyncpg: the chunked fetch was not stopped")
            sys.exit(1)
        except asyncpg.exceptions.InsufficientPrivilegeError as e:
            check("stopped this result after 1000 rows" in str(e), True, f"asyncpg row limit: {e}")
        check(seen, 1000, "rows the chunked fetch received")
    finally:
        await conn.close()
    print("OK asyncpg policy")


psycopg_checks()
asyncio.run(asyncpg_checks())
