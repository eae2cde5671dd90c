"""Issue 19's leak corpus with real Python drivers through Vigil under the
shipped PHI policy: a masked column cast to another type fails without the
value in the error (psycopg text and binary, asyncpg), set_config and
pg_notify of a masked value are refused, and an error that quotes what the
client sent itself keeps it.

Run by tests/e2e/leaks.rs with VIGIL_PG_PORT, VIGIL_USER, VIGIL_PASSWORD,
VIGIL_TABLE (rows with id 1, the masked mrn VIGIL_SECRET and a date column
`admitted`); prints one OK line per driver.

Lineage (issue 19): values computed from the masked mrn (base64, reversed,
one code point) and the PHI table's date (as it is, plus a day, in binary
too) come back masked; values computed from nothing (now(), the client's
own parameter) come back as they are.
"""

import asyncio
import base64
import datetime
import os
import sys

import asyncpg
import psycopg

PORT = int(os.environ["VIGIL_PG_PORT"])
USER = os.environ["VIGIL_USER"]
PASSWORD = os.environ["VIGIL_PASSWORD"]
TABLE = os.environ["VIGIL_TABLE"]
SECRET = os.environ["VIGIL_SECRET"]


def fail(what):
    print(f"FAIL {what}")
    sys.exit(1)


def no_secret(text, what):
    if SECRET in text or SECRET[4:9] in text:
        fail(f"{what}: the masked value is in {text!r}")


TRANSFORMS = [
    # (SQL computed from the masked value, what it would be in clear)
    ("SELECT encode(convert_to(mrn, 'UTF8'), 'base64') FROM {t} WHERE id = {p}",
     lambda: base64.b64encode(SECRET.encode()).decode()),
    ("SELECT reverse(mrn) FROM {t} WHERE id = {p}", lambda: SECRET[::-1]),
    ("SELECT ascii(substr(mrn, 5, 1)) FROM {t} WHERE id = {p}", lambda: ord(SECRET[4])),
    ("SELECT admitted FROM {t} WHERE id = {p}", lambda: datetime.date(2026, 3, 1)),
    ("SELECT admitted + 1 FROM {t} WHERE id = {p}", lambda: datetime.date(2026, 3, 2)),
]


def check_transforms(what, values):
    """`values`: what each TRANSFORMS statement returned, in order."""
    for (sql, clear), value in zip(TRANSFORMS, values, strict=True):
        if value == clear() or (isinstance(value, str) and SECRET in value):
            fail(f"{what}: {sql} came back in clear: {value!r}")
        if value is not None and value != "[REDACTED]":
            fail(f"{what}: {sql} came back as {value!r}, not masked")


def psycopg_checks():
    with psycopg.connect(
        host="127.0.0.1", port=PORT, user=USER, password=PASSWORD, dbname="test",
        autocommit=True,
    ) as conn:
        for binary in (False, True):
            with conn.cursor(binary=binary) as cur:
                try:
                    cur.execute(f"SELECT mrn::int FROM {TABLE} WHERE id = %s", (1,))
                    fail(f"psycopg binary={binary}: the cast succeeded")
                except psycopg.errors.InvalidTextRepresentation as e:
                    no_secret(str(e), f"psycopg binary={binary} cast error")
                    if e.diag.message_primary is None or "<redacted by Vigil>" not in e.diag.message_primary:
                        fail(f"psycopg binary={binary}: {e.diag.message_primary!r}")
        for sql in (
            f"SELECT set_config('application_name', mrn, false) FROM {TABLE} WHERE id = %s",
            f"SELECT pg_notify('leak', mrn) FROM {TABLE} WHERE id = %s",
        ):
            try:
                conn.execute(sql, (1,))
                fail(f"psycopg: not refused: {sql}")
            except psycopg.errors.InsufficientPrivilege as e:
                if "deny-unmasked-channels" not in str(e):
                    fail(f"psycopg: refused by another rule: {e}")
        for binary in (False, True):
            values = []
            with conn.cursor(binary=binary) as cur:
                for sql, _ in TRANSFORMS:
                    cur.execute(sql.format(t=TABLE, p="%s"), (1,))
                    values.append(cur.fetchone()[0])
            check_transforms(f"psycopg binary={binary}", values)
            with conn.cursor(binary=binary) as cur:
                cur.execute("SELECT now(), length(%s::text)", ("MRN-12345-Z",))
                now, length = cur.fetchone()
                if not isinstance(now, datetime.datetime) or length != 11:
                    fail(f"psycopg binary={binary}: values from nothing masked: {now!r} {length!r}")
        # A protocol-level statement name that SQL DEALLOCATEs and PREPAREs
        # again runs the SQL's statement: the gateway must not pair its
        # result with the first statement's lineage (review, helper-5).
        pg = conn.pgconn
        pg.prepare(b"vigil_s1", b"SELECT 'x'::text AS a")
        conn.execute("DEALLOCATE vigil_s1")
        conn.execute(f"PREPARE vigil_s1 AS SELECT reverse(mrn) AS a FROM {TABLE} WHERE id = 1")
        res = pg.exec_prepared(b"vigil_s1", [])
        value = (res.get_value(0, 0) or b"").decode()
        if SECRET[::-1] in value:
            fail(f"psycopg: a re-PREPAREd protocol name leaked {value!r}")
        conn.execute("DEALLOCATE vigil_s1")
        if SECRET in (conn.info.parameter_status("application_name") or ""):
            fail("psycopg: application_name carries the masked value")
        # A value bound earlier cannot vouch for the same text in an error:
        # the agent that sends its guess first learns nothing from the cast.
        conn.execute("SELECT %s::text", (SECRET,))
        try:
            conn.execute(f"SELECT mrn::int FROM {TABLE} WHERE id = %s", (1,))
            fail("psycopg: the cast after a guess succeeded")
        except psycopg.errors.InvalidTextRepresentation as e:
            no_secret(str(e), "psycopg cast error after the value was sent")
        # The client's own bound value is withheld as well; the SQLSTATE
        # and its name still say what went wrong.
        try:
            conn.execute("SELECT %s::int", ("not-a-number",))
            fail("psycopg: the literal cast succeeded")
        except psycopg.errors.InvalidTextRepresentation as e:
            if "not-a-number" in str(e) or e.diag.message_primary != "invalid text representation: <redacted by Vigil>":
                fail(f"psycopg: a bound value in an error was not withheld: {e}")
    print("OK psycopg leaks")


async def asyncpg_checks():
    conn = await asyncpg.connect(
        host="127.0.0.1", port=PORT, user=USER, password=PASSWORD, database="test"
    )
    heard = []
    await conn.add_listener("leak", lambda *args: heard.append(args[-1]))
    try:
        await conn.fetchval(f"SELECT mrn::int FROM {TABLE} WHERE id = $1", 1)
        fail("asyncpg: the cast succeeded")
    except asyncpg.exceptions.InvalidTextRepresentationError as e:
        no_secret(str(e), "asyncpg cast error")
    try:
        await conn.fetchval(f"SELECT pg_notify('leak', mrn) FROM {TABLE} WHERE id = $1", 1)
        fail("asyncpg: pg_notify was not refused")
    except asyncpg.exceptions.InsufficientPrivilegeError as e:
        if "deny-unmasked-channels" not in str(e):
            fail(f"asyncpg: refused by another rule: {e}")
    values = [await conn.fetchval(sql.format(t=TABLE, p="$1"), 1) for sql, _ in TRANSFORMS]
    check_transforms("asyncpg", values)
    now = await conn.fetchval("SELECT now()")
    if not isinstance(now, datetime.datetime):
        fail(f"asyncpg: now() masked: {now!r}")
    await asyncio.sleep(0.3)
    for payload in heard:
        no_secret(payload, "asyncpg notification")
    await conn.close()
    print("OK asyncpg leaks")


psycopg_checks()
asyncio.run(asyncpg_checks())
