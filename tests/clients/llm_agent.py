"""An agent calling a model through Vigil with the official SDKs, changed
only in base URL and key (the key is the agent's OIDC access token).

Usage: llm_agent.py --base-url URL --key TOKEN OPS_JSON

Each op: {"sdk": "openai"|"anthropic", "stream": bool, "prompt": str,
"max_tokens": int, "model": str}; prints one JSON line per op:
{"text": ...} with the answer's text as the SDK assembled it, or
{"error": status, "type": ..., "message": ...} for what the SDK raised.
"""

import argparse
import json
import sys

import anthropic
import openai


def run_openai(base_url, key, op):
    client = openai.OpenAI(base_url=base_url + "/v1", api_key=key, max_retries=0)
    kwargs = dict(
        model=op.get("model", "gemma"),
        messages=[{"role": "user", "content": op["prompt"]}],
        max_tokens=op.get("max_tokens", 48),
        temperature=0,
        seed=7,
    )
    kwargs.update(op.get("extra", {}))
    if op.get("stream"):
        text, chunks = "", 0
        try:
            with client.chat.completions.create(stream=True, **kwargs) as stream:
                for chunk in stream:
                    chunks += 1
                    for choice in chunk.choices:
                        text += choice.delta.content or ""
        except openai.APIError as e:
            # What arrived before the stream broke, and why it broke.
            return {"text": text, "error": "stream", "message": str(e)}
        return {"text": text, "chunks": chunks}
    answer = client.chat.completions.create(**kwargs)
    return {"text": answer.choices[0].message.content, "id": answer.id}


def run_responses(base_url, key, op):
    client = openai.OpenAI(base_url=base_url + "/v1", api_key=key, max_retries=0)
    kwargs = dict(
        model=op.get("model", "gemma"),
        input=op["prompt"],
        max_output_tokens=op.get("max_tokens", 48),
        temperature=0,
    )
    if op.get("stream"):
        text, final = "", None
        for event in client.responses.create(stream=True, **kwargs):
            if event.type == "response.output_text.delta":
                text += event.delta
            elif event.type == "response.completed":
                final = event.response.output_text
        return {"text": text, "final": final}
    answer = client.responses.create(**kwargs)
    return {"text": answer.output_text}


def run_anthropic(base_url, key, op):
    client = anthropic.Anthropic(base_url=base_url, api_key=key, max_retries=0)
    kwargs = dict(
        model=op.get("model", "gemma"),
        messages=[{"role": "user", "content": op["prompt"]}],
        max_tokens=op.get("max_tokens", 48),
        # This SDK release takes no temperature argument; the server does.
        extra_body={"temperature": 0, "seed": 7, **op.get("extra_body", {})},
    )
    if op.get("stream"):
        with client.messages.stream(**kwargs) as stream:
            text = "".join(stream.text_stream)
            final = stream.get_final_message()
        return {"text": text, "final": "".join(b.text for b in final.content if b.type == "text")}
    answer = client.messages.create(**kwargs)
    return {"text": "".join(b.text for b in answer.content if b.type == "text")}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--base-url", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("ops")
    a = p.parse_args()
    for op in json.loads(a.ops):
        try:
            run = {"openai": run_openai, "responses": run_responses, "anthropic": run_anthropic}[
                op.get("sdk", "openai")
            ]
            out = run(a.base_url, a.key, op)
        except (openai.APIStatusError, anthropic.APIStatusError) as e:
            body = e.body if isinstance(e.body, dict) else {}
            err = body.get("error", body) if isinstance(body, dict) else {}
            out = {
                "error": e.status_code,
                "type": err.get("type") if isinstance(err, dict) else None,
                "message": err.get("message") if isinstance(err, dict) else str(e),
            }
        except (openai.APIError, anthropic.APIError) as e:
            out = {"error": "stream", "message": str(e)}
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    sys.exit(main())
