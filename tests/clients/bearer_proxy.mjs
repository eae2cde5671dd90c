#!/usr/bin/env node
// A forwarding HTTP proxy that adds `Authorization: Bearer <token>` to
// every request: for clients that cannot send a token themselves (the MCP
// conformance suite has no option for it) in front of Vigil's MCP listener.
// Streams both ways (SSE answers pass as they come).
//
//   node bearer_proxy.mjs --port P --upstream http://127.0.0.1:Q --token T
//
// stdout: one line, `ready <port>`. Loopback only; tests and benches only.

import * as http from 'node:http';

const args = process.argv.slice(2);
const opt = (name) => {
  const i = args.indexOf(name);
  if (i < 0 || i + 1 >= args.length) {
    process.stderr.write(`bearer_proxy: ${name} is required\n`);
    process.exit(2);
  }
  return args[i + 1];
};
const port = Number(opt('--port'));
const upstream = new URL(opt('--upstream'));
const token = opt('--token');

const server = http.createServer((req, res) => {
  const headers = { ...req.headers, host: upstream.host, authorization: `Bearer ${token}` };
  const out = http.request(
    { host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers },
    (up) => {
      res.writeHead(up.statusCode, up.headers);
      up.pipe(res);
    },
  );
  out.on('error', (e) => {
    res.writeHead(502);
    res.end(`bearer_proxy: ${e.message}`);
  });
  req.pipe(out);
});
server.listen(port, '127.0.0.1', () => console.log(`ready ${port}`));
