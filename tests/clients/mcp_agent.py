"""An MCP agent for the gateway tests: the official Python SDK's client
(mcp 2.x) over Streamable HTTP, with a bearer token.

    VIGIL_MCP_URL=... VIGIL_MCP_TOKEN=... python3 mcp_agent.py MODE STEPS_JSON

MODE: "legacy" (the initialize handshake, a session), "2026-07-28" (the
stateless revision) or "auto" (the SDK probes). STEPS_JSON: a list of
{"op": "list_tools"} | {"op": "call", "tool": T, "args": {...}} |
{"op": "read", "uri": U}. Prints one JSON line per step: the result as the
agent received it, or {"error": code, "message": text}.
"""

import asyncio
import json
import os
import sys

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError


def dump(model):
    return json.loads(model.model_dump_json(by_alias=True, exclude_none=True))


LOGS = []


async def collect_log(params):
    LOGS.append(json.loads(params.model_dump_json(by_alias=True, exclude_none=True)))


async def run(mode, steps):
    headers = {"Authorization": f"Bearer {os.environ['VIGIL_MCP_TOKEN']}"}
    async with httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(120.0)) as http:
        transport = streamable_http_client(os.environ["VIGIL_MCP_URL"], http_client=http)
        async with Client(transport, mode=mode, cache=None, logging_callback=collect_log) as client:
            print(json.dumps({"protocol_version": client.protocol_version}), flush=True)
            for step in steps:
                try:
                    if step["op"] == "list_tools":
                        out = dump(await client.list_tools())
                    elif step["op"] == "call":
                        LOGS.clear()
                        out = dump(await client.call_tool(step["tool"], step.get("args", {})))
                        if LOGS:
                            out["logs"] = list(LOGS)
                    elif step["op"] == "read":
                        out = dump(await client.read_resource(step["uri"]))
                    else:
                        raise ValueError(step["op"])
                except MCPError as e:
                    out = {"error": e.error.code, "message": e.error.message}
                print(json.dumps(out), flush=True)


def main():
    mode, steps = sys.argv[1], json.loads(sys.argv[2])
    asyncio.run(run(mode, steps))


if __name__ == "__main__":
    main()
