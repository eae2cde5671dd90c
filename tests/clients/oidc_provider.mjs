#!/usr/bin/env node
// Test-only OpenID provider for Vigil's integration tests.
//
// Runs a REAL `oidc-provider` (client_credentials + resource indicators,
// RFC 9068 JWT access tokens) on 127.0.0.1, plus a few `/_test/*` endpoints
// that let tests rotate keys and mint hostile tokens (foreign key, alg
// confusion, alg=none, arbitrary claims).
//
//   node tests/clients/oidc_provider.mjs --port <P> [--config <file.json>]
//
// stdout carries exactly one line, `ready http://127.0.0.1:<P>`, so a test can
// wait for it; everything else (including oidc-provider's own notices) goes to
// stderr. Never expose this outside loopback: /_test/sign mints valid tokens.

import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';

import { CompactSign, exportJWK, generateKeyPair } from 'jose';
import Provider, { errors } from 'oidc-provider';

// oidc-provider prints NOTICEs with console.info (stdout); keep stdout clean
// for the single `ready` line.
console.log = console.error;
console.info = console.error;

const die = (msg) => {
  process.stderr.write(`oidc_provider: ${msg}\n`);
  process.exit(2);
};

// ---------------------------------------------------------------- arguments --
const args = process.argv.slice(2);
let port;
let configPath;
for (let i = 0; i < args.length; i += 1) {
  if (args[i] === '--port') port = Number(args[(i += 1)]);
  else if (args[i] === '--config') configPath = args[(i += 1)];
  else die(`unknown argument ${args[i]}`);
}
if (!Number.isInteger(port) || port <= 0 || port > 65535) die('--port <P> is required');

const config = configPath ? JSON.parse(fs.readFileSync(configPath, 'utf8')) : {};
const clients = config.clients ?? [
  { client_id: 'agent-ehr', client_secret: 'agent-ehr-secret', groups: ['ehr-analysts'] },
];
const resources = config.resources ?? {
  'urn:vigil:ehr': { scope: 'db:read db:write db:admin', ttl: 300, alg: 'RS256' },
};
const ALGS = ['RS256', 'PS256', 'ES256', 'EdDSA'];
for (const [id, r] of Object.entries(resources)) {
  if (!ALGS.includes(r.alg ?? 'RS256')) die(`resource ${id}: alg must be one of ${ALGS}`);
}
const issuer = `http://127.0.0.1:${port}`;

// --------------------------------------------------------------------- keys --
// One key per algorithm, each with an explicit `alg` and a random kid, so a
// token's kid names exactly one JWKS entry and that entry says which alg.
// (RS256 and PS256 get separate RSA keys for that reason.)
const KEY_OPTS = {
  RS256: { modulusLength: 2048 },
  PS256: { modulusLength: 2048 },
  ES256: { crv: 'P-256' },
  EdDSA: { crv: 'Ed25519' },
};

async function newKey(alg, kid = crypto.randomUUID()) {
  const { privateKey, publicKey } = await generateKeyPair(alg, { ...KEY_OPTS[alg], extractable: true });
  const jwk = { ...(await exportJWK(privateKey)), kid, alg, use: 'sig' };
  return { alg, kid, privateKey, publicKey, jwk };
}

// jose 6 hands out WebCrypto CryptoKeys; the PEM needs a node KeyObject.
const spkiPem = (k) => crypto.KeyObject.from(k.publicKey).export({ type: 'spki', format: 'pem' });

async function newKeySet() {
  const set = {};
  for (const alg of ALGS) set[alg] = await newKey(alg);
  return set;
}

// ----------------------------------------------------------------- provider --
const clientsById = new Map(clients.map((c) => [c.client_id, c]));
const firstResource = Object.keys(resources)[0];

function buildProvider(privateJwks) {
  const provider = new Provider(issuer, {
    clients: clients.map((c) => ({
      client_id: c.client_id,
      client_secret: c.client_secret,
      grant_types: ['client_credentials'],
      redirect_uris: [],
      response_types: [],
      // oidc-provider accepts both basic and post for either secret method.
      token_endpoint_auth_method: 'client_secret_basic',
    })),
    jwks: { keys: privateJwks },
    // Fixed cookie keys only silence a dev warning; no cookies are used here.
    cookies: { keys: ['vigil-test-only'] },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: (ctx, client, oneOf) => oneOf ?? firstResource,
        getResourceServerInfo(ctx, resource) {
          const r = resources[resource];
          if (!r) throw new errors.InvalidTarget();
          return {
            scope: r.scope,
            audience: resource,
            accessTokenTTL: r.ttl ?? 300,
            accessTokenFormat: 'jwt',
            // alg picks the key from the keystore (selectForSign); the
            // resource-server signing path is not gated by enabledJWA.
            jwt: { sign: { alg: r.alg ?? 'RS256' } },
          };
        },
      },
    },
    // Token lifetime comes from the resource's `ttl` (also silences a NOTICE).
    ttl: { ClientCredentials: (ctx, token) => token.resourceServer?.accessTokenTTL ?? 300 },
    // `groups` (and any extra_claims) land in every access token of that client.
    extraTokenClaims(ctx, token) {
      const c = clientsById.get(token.clientId);
      if (!c) return undefined;
      return { ...(c.groups ? { groups: c.groups } : {}), ...c.extra_claims };
    },
  });
  provider.on('server_error', (ctx, err) => console.error('server_error', err));
  return provider;
}

// State swapped wholesale by /_test/rotate: an oidc-provider keystore is fixed
// per instance, so rotation = a new Provider with the new keys.
let current; // { keys: {alg: key}, published: [private JWKs in the JWKS], handler }

async function install(keepOld) {
  const keys = await newKeySet();
  // New keys first: among equally-scored keys oidc-provider signs with the
  // first one, so old (kept) keys only ever appear in the JWKS.
  const published = [...Object.values(keys).map((k) => k.jwk), ...(keepOld ? current.published : [])];
  const provider = buildProvider(published);
  current = { keys, published, handler: provider.callback() };
  return Object.values(keys).map((k) => k.kid);
}

// ---------------------------------------------------------- test endpoints --
const b64u = (x) => Buffer.from(typeof x === 'string' ? x : JSON.stringify(x)).toString('base64url');

async function signTest({ header = {}, claims = {}, key = 'current' }) {
  const payload = Buffer.from(JSON.stringify(claims));
  if (key === 'none') {
    // jose refuses alg=none; an unsecured JWS has an empty signature part.
    return `${b64u({ ...header, alg: 'none', typ: header.typ ?? 'at+jwt' })}.${b64u(claims)}.`;
  }
  if (key === 'hs256-public-pem') {
    // Algorithm confusion: HMAC keyed with the public RSA key's SPKI PEM text.
    const rsa = current.keys.RS256;
    const pem = spkiPem(rsa);
    const h = { typ: 'at+jwt', kid: rsa.kid, ...header, alg: 'HS256' };
    const input = `${b64u(h)}.${b64u(claims)}`;
    return `${input}.${crypto.createHmac('sha256', pem).update(input).digest('base64url')}`;
  }
  const { alg } = header;
  if (!ALGS.includes(alg)) throw new Error(`header.alg must be one of ${ALGS}`);
  let k;
  if (key === 'current') k = current.keys[alg];
  else if (key === 'foreign') k = await newKey(alg, header.kid ?? crypto.randomUUID());
  else throw new Error('key must be current | foreign | hs256-public-pem | none');
  const h = { typ: 'at+jwt', kid: k.kid, ...header };
  return new CompactSign(payload).setProtectedHeader(h).sign(k.privateKey);
}

function keysByAlg() {
  const out = {};
  for (const [alg, k] of Object.entries(current.keys)) {
    out[alg] = { kid: k.kid, pem: spkiPem(k) };
  }
  return out;
}

async function readJson(req) {
  let body = '';
  for await (const chunk of req) body += chunk;
  return body.trim() ? JSON.parse(body) : {};
}

async function handleTest(req, res) {
  const reply = (status, obj) => {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(obj));
  };
  try {
    const path = new URL(req.url, issuer).pathname;
    if (req.method === 'POST' && path === '/_test/rotate') {
      const { keep_old: keepOld = false } = await readJson(req);
      return reply(200, { kids: await install(keepOld === true) });
    }
    if (req.method === 'POST' && path === '/_test/sign') {
      return reply(200, { token: await signTest(await readJson(req)) });
    }
    if (req.method === 'GET' && path === '/_test/keys') return reply(200, keysByAlg());
    return reply(404, { error: 'not_found' });
  } catch (err) {
    return reply(400, { error: String(err?.message ?? err) });
  }
}

// -------------------------------------------------------------------- serve --
await install(false);
const server = http.createServer((req, res) => {
  if (req.url.startsWith('/_test/')) handleTest(req, res);
  else current.handler(req, res);
});
server.on('error', (err) => die(err.message));
server.listen(port, '127.0.0.1', () => process.stdout.write(`ready ${issuer}\n`));
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(0));
