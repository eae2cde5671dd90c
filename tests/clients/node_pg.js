// node-postgres through Vigil: parameterized queries (extended protocol),
// a named prepared statement, a transaction, an error that leaves the
// connection usable. Run by tests/e2e/clients.rs; prints OK or exits 1.
const { Client } = require("pg");

function check(got, want, what) {
  if (JSON.stringify(got) !== JSON.stringify(want)) {
    console.log(`FAIL ${what}: got ${JSON.stringify(got)}, want ${JSON.stringify(want)}`);
    process.exit(1);
  }
}

async function main() {
  const client = new Client({
    host: "127.0.0.1",
    port: Number(process.env.VIGIL_PG_PORT),
    user: process.env.VIGIL_USER,
    password: process.env.VIGIL_PASSWORD,
    database: "test",
  });
  await client.connect();
  try {
    const r1 = await client.query("SELECT $1::int + 1 AS n", [41]);
    check(r1.rows, [{ n: 43 - 1 }], "node param");
    const named = { name: "vigil-shout", text: "SELECT $1::text || '!' AS s", values: ["hey"] };
    check((await client.query(named)).rows, [{ s: "hey!" }], "node prepared");
    check((await client.query({ ...named, values: ["again"] })).rows, [{ s: "again!" }], "node prepared reuse");
    await client.query("BEGIN");
    await client.query("CREATE TEMP TABLE vigil_node(id int)");
    await client.query("INSERT INTO vigil_node SELECT generate_series(1, 3)");
    await client.query("COMMIT");
    const r2 = await client.query("SELECT count(*)::int AS c FROM vigil_node");
    check(r2.rows, [{ c: 3 }], "node transaction");
    let failed = false;
    try {
      await client.query("SELECT 1/0");
    } catch (e) {
      failed = e.code === "22012";
    }
    check(failed, true, "node error code");
    check((await client.query("SELECT 'still usable' AS s")).rows, [{ s: "still usable" }], "node after error");
  } finally {
    await client.end();
  }
  console.log("OK node-postgres", require("pg/package.json").version);
}

main().catch((e) => {
  console.log("FAIL node-postgres:", e.message);
  process.exit(1);
});
