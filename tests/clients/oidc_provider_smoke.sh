#!/usr/bin/env bash
# Smoke test for oidc_provider.mjs: starts it on a free loopback port, drives
# every feature Vigil's integration tests rely on with curl, and checks the
# answers with a little node (jose, from this folder's node_modules).
# Needs `npm ci --prefix tests/clients` first. Exits non-zero on any failure.
set -uo pipefail
cd "$(dirname "$0")"

TMP=$(mktemp -d)
PID=
stop() { if [ -n "$PID" ]; then kill "$PID" 2>/dev/null; wait "$PID" 2>/dev/null; PID=; fi; }
trap 'stop; rm -rf "$TMP"' EXIT

# Ask the kernel for a free port rather than guessing one.
PORT=$(node -e 's=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')
BASE=http://127.0.0.1:$PORT
export BASE

start() { # start [--config FILE]: launch the provider and wait for its ready line
  stop
  node oidc_provider.mjs --port "$PORT" "$@" >"$TMP/out" 2>"$TMP/err" &
  PID=$!
  for _ in $(seq 100); do
    grep -q '^ready ' "$TMP/out" && return 0
    kill -0 "$PID" 2>/dev/null || break
    sleep 0.1
  done
  echo "provider did not start:"; cat "$TMP/err"; exit 1
}

# Assertions are JS expressions (may be async). `$` holds the extra args,
# JSON-decoded when they parse; helpers below decode and verify tokens.
HELPERS='
import crypto from "node:crypto";
import { compactVerify, createLocalJWKSet, jwtVerify, decodeProtectedHeader as hdr, decodeJwt as claims } from "jose";
const kids = (jwks) => jwks.keys.map((k) => k.kid);
// Full RFC 9068 check against the served JWKS: signature, iss, typ, alg.
const verify = (t, jwks, alg) => jwtVerify(t, createLocalJWKSet(jwks),
  { issuer: process.env.BASE, typ: "at+jwt", algorithms: [alg] }).then(() => true);
const sigOk = (t, jwks) => compactVerify(t, createLocalJWKSet(jwks)).then(() => true);
const rejects = (p) => p.then(() => false, () => true);
const $ = process.argv.slice(1).map((a) => { try { return JSON.parse(a); } catch { return a; } });
'
PASS=0 FAIL=0
check() { # check DESCRIPTION JS_EXPR [ARG...]
  local desc=$1 expr=$2; shift 2
  if node --input-type=module -e "$HELPERS if (!(await ($expr))) process.exit(1);" "$@" 2>"$TMP/check.err"; then
    echo "ok   - $desc"; PASS=$((PASS + 1))
  else
    echo "FAIL - $desc"; sed 's/^/       /' "$TMP/check.err"; FAIL=$((FAIL + 1))
  fi
}
token() { curl -s -u agent-ehr:agent-ehr-secret -d grant_type=client_credentials "$@" "$BASE/token"; }
at() { node -pe 'JSON.parse(require("fs").readFileSync(0, "utf8")).access_token'; }
jwks() { curl -s "$BASE/jwks"; }
post() { curl -s -H 'content-type: application/json' -d "$2" "$BASE/_test/$1"; }
signed() { post sign "$1" | node -pe 'JSON.parse(require("fs").readFileSync(0, "utf8")).token'; }

# ---------------------------------------------------------- default config --
start
check "stdout is exactly the ready line" '$[0] === `ready ${process.env.BASE}\n.`' "$(cat "$TMP/out"; echo .)" # the dot keeps the newline
DISCO=$(curl -s "$BASE/.well-known/openid-configuration")
check "discovery has what CoreProviderMetadata::discover needs" \
  '$[0].issuer === process.env.BASE && ["authorization_endpoint", "jwks_uri", "response_types_supported",
   "subject_types_supported", "id_token_signing_alg_values_supported", "token_endpoint"].every((k) => $[0][k])' "$DISCO"
check "JWKS served with a JSON content type" '/^application\/(json|jwk-set\+json)/.test($[0])' \
  "$(curl -s -o /dev/null -w '%{content_type}' "$BASE/jwks")"
JWKS=$(jwks); KEYS=$(curl -s "$BASE/_test/keys")
check "JWKS holds one public key per alg, as /_test/keys reports" \
  '["RS256", "PS256", "ES256", "EdDSA"].every((a) => $[0].keys.some((k) => k.kid === $[1][a].kid && k.alg === a && !k.d))' "$JWKS" "$KEYS"

AT=$(token -d resource=urn:vigil:ehr -d scope=db:read | at)
check "client_credentials token: RS256 at+jwt, kid in JWKS, verifies" \
  'hdr($[0]).alg === "RS256" && hdr($[0]).typ === "at+jwt" && kids($[1]).includes(hdr($[0]).kid) && verify($[0], $[1], "RS256")' "$AT" "$JWKS"
check "token claims: iss sub aud exp iat jti client_id scope groups, ttl 300" \
  '((c) => c.iss === process.env.BASE && c.sub === "agent-ehr" && c.client_id === "agent-ehr" && c.aud === "urn:vigil:ehr"
   && c.scope === "db:read" && c.jti && c.exp - c.iat === 300 && JSON.stringify(c.groups) === "[\"ehr-analysts\"]")(claims($[0]))' "$AT"
check "client_secret_post accepted; no resource => default resource" \
  'claims($[0]).aud === "urn:vigil:ehr"' \
  "$(curl -s -d client_id=agent-ehr -d client_secret=agent-ehr-secret -d grant_type=client_credentials "$BASE/token" | at)"
check "unknown resource refused with invalid_target" '$[0].error === "invalid_target"' "$(token -d resource=urn:nope)"
check "wrong secret refused with invalid_client" '$[0].error === "invalid_client"' \
  "$(curl -s -u agent-ehr:wrong -d grant_type=client_credentials "$BASE/token")"

# /_test/sign: claims must come back verbatim (no defaults added), and the
# signature must check out against the JWKS (signature only: claims are junk).
CLAIMS='{"iss":"x","aud":"wrong","exp":1,"sub":"mallory"}'
for alg in RS256 PS256 ES256 EdDSA; do
  T=$(signed "{\"header\":{\"alg\":\"$alg\"},\"key\":\"current\",\"claims\":$CLAIMS}")
  check "sign current $alg: current kid, typ at+jwt, claims verbatim, JWKS signature" \
    'hdr($[0]).alg === $[3] && hdr($[0]).kid === $[1][$[3]].kid && hdr($[0]).typ === "at+jwt"
     && JSON.stringify(claims($[0])) === JSON.stringify($[2]) && sigOk($[0], $[4])' "$T" "$KEYS" "$CLAIMS" "$alg" "$JWKS"
done
T=$(signed '{"header":{"alg":"ES256","kid":"chosen","typ":"JWT"},"claims":{}}')
check "sign honours an explicit kid and typ" 'hdr($[0]).kid === "chosen" && hdr($[0]).typ === "JWT"' "$T"
T=$(signed '{"header":{"alg":"RS256"},"key":"foreign","claims":{}}')
check "sign foreign: kid not in JWKS, fails verification" \
  '!kids($[1]).includes(hdr($[0]).kid) && hdr($[0]).alg === "RS256" && rejects(sigOk($[0], $[1]))' "$T" "$JWKS"
ES_KID=$(node -pe 'JSON.parse(process.argv[1]).ES256.kid' "$KEYS")
T=$(signed "{\"header\":{\"alg\":\"ES256\",\"kid\":\"$ES_KID\"},\"key\":\"foreign\",\"claims\":{}}")
check "sign foreign with a JWKS kid: same kid, wrong key" \
  'hdr($[0]).kid === $[2].ES256.kid && rejects(sigOk($[0], $[1]))' "$T" "$JWKS" "$KEYS"
T=$(signed '{"header":{"alg":"RS256"},"key":"hs256-public-pem","claims":{"sub":"x"}}')
check "sign hs256-public-pem: HS256, RSA kid, HMAC keyed by the JWKS RSA key's SPKI PEM" \
  '((t, jwks, keys) => { const [h, p, s] = t.split(".");
     const pem = crypto.createPublicKey({ key: jwks.keys.find((k) => k.kid === keys.RS256.kid), format: "jwk" }).export({ type: "spki", format: "pem" });
     return hdr(t).alg === "HS256" && hdr(t).kid === keys.RS256.kid && pem === keys.RS256.pem
       && crypto.createHmac("sha256", pem).update(`${h}.${p}`).digest("base64url") === s; })($[0], $[1], $[2])' "$T" "$JWKS" "$KEYS"
T=$(signed '{"header":{},"key":"none","claims":{"sub":"x"}}')
check "sign none: alg none, typ at+jwt, empty signature" \
  '$[0].endsWith(".") && $[0].split(".").length === 3 && hdr($[0]).alg === "none" && hdr($[0]).typ === "at+jwt" && claims($[0]).sub === "x"' "$T"

# Rotation without keep_old: JWKS is exactly the new set, tokens use it.
NEW=$(post rotate '{}')
JWKS2=$(jwks)
check "rotate: new kids, old ones gone from JWKS" \
  '$[0].kids.length === 4 && JSON.stringify(kids($[1]).sort()) === JSON.stringify([...$[0].kids].sort()) && !kids($[1]).some((k) => kids($[2]).includes(k))' \
  "$NEW" "$JWKS2" "$JWKS"
check "rotate: same port, new tokens carry the new RS256 kid and verify" \
  'hdr($[0]).kid === $[2].RS256.kid && $[1].kids.includes(hdr($[0]).kid) && verify($[0], $[3], "RS256")' \
  "$(token -d scope=db:read | at)" "$NEW" "$(curl -s "$BASE/_test/keys")" "$JWKS2"

# ------------------------------------------------------------- config file --
cat >"$TMP/config.json" <<'EOF'
{
  "clients": [
    { "client_id": "agent-ehr", "client_secret": "agent-ehr-secret", "groups": ["a", "b"] },
    { "client_id": "bot", "client_secret": "bot-secret", "extra_claims": { "tenant": "t1" } }
  ],
  "resources": {
    "urn:es": { "scope": "db:read", "ttl": 60, "alg": "ES256" },
    "urn:ps": { "scope": "db:read", "ttl": 60, "alg": "PS256" },
    "urn:ed": { "scope": "db:read", "ttl": 60, "alg": "EdDSA" }
  }
}
EOF
start --config "$TMP/config.json"
JWKS=$(jwks)
for r in es:ES256 ps:PS256 ed:EdDSA; do
  check "resource urn:${r%%:*} => ${r#*:} token, kid in JWKS, verifies" \
    'hdr($[0]).alg === $[1] && kids($[2]).includes(hdr($[0]).kid) && claims($[0]).exp - claims($[0]).iat === 60 && verify($[0], $[2], $[1])' \
    "$(token -d "resource=urn:${r%%:*}" | at)" "${r#*:}" "$JWKS"
done
check "no resource => first configured resource (urn:es)" 'claims($[0]).aud === "urn:es" && hdr($[0]).alg === "ES256"' "$(token | at)"
check "extra_claims merged, no groups when none configured" \
  'claims($[0]).tenant === "t1" && claims($[0]).sub === "bot" && !("groups" in claims($[0]))' \
  "$(curl -s -u bot:bot-secret -d grant_type=client_credentials "$BASE/token" | at)"
check "groups come from the config file" \
  'JSON.stringify(claims($[0]).groups) === "[\"a\",\"b\"]"' "$(token | at)"

# Rotation with keep_old: JWKS = new + old, new tokens still use the new key.
OLD=$(jwks); NEW=$(post rotate '{"keep_old": true}'); JWKS=$(jwks)
check "rotate keep_old: JWKS serves new and old kids" \
  'kids($[1]).length === 8 && $[0].kids.every((k) => kids($[1]).includes(k)) && kids($[2]).every((k) => kids($[1]).includes(k))' \
  "$NEW" "$JWKS" "$OLD"
check "rotate keep_old: new EdDSA token uses the new kid" \
  '$[0].kids.includes(hdr($[1]).kid) && verify($[1], $[2], "EdDSA")' "$NEW" "$(token -d resource=urn:ed | at)" "$JWKS"

stop
check "provider wrote nothing else to stdout" '$[0] === `ready ${process.env.BASE}\n.`' "$(cat "$TMP/out"; echo .)"
echo "$PASS passed, $FAIL failed"
[ "$FAIL" -eq 0 ]
