#!/usr/bin/env python3
"""Drives an OpenAI-compatible server (phigate, or any upstream) with the real `openai` Python SDK
and prints what the SDK saw as JSON, so that a test in another language can assert on it.

Works against any OpenAI-compatible base URL. Secrets come from the environment, never the command line:

    OPENAI_BASE_URL   e.g. http://127.0.0.1:8080/v1   (required)
    <key_env>         each case names the environment variable that holds its API key
                      (default PHIGATE_API_KEY); "key_env": null sends no Authorization header

Modes:

    phigate_sdk.py batch < cases.json     run a JSON array of cases, print {"name": result, ...}
    phigate_sdk.py selfcheck --model M [--embed-model E]
                                          chat, stream, embeddings, models against the base URL

A case is {"name", "op": "chat"|"embeddings"|"models", "key_env", "model", "messages", "stream",
"input", "headers", "repeat", "stop_on_error", "stream_options"}. A result is
{"ok": true, ...what the SDK returned...} or {"ok": false, "error": {"class", "status", "code",
"type", "param", "message"}} where "class" is the SDK's exception class name
(AuthenticationError, PermissionDeniedError, BadRequestError, RateLimitError, ...).
The process exits 0 when every case ran (a refusal is a result, not a failure), 2 on a bug here.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import openai


def client_for(key_env: str | None) -> tuple[openai.OpenAI, dict]:
    base_url = os.environ["OPENAI_BASE_URL"]
    extra: dict = {}
    if key_env is None:
        # No Authorization header at all (the SDK insists on a key unless the header is omitted).
        api_key = "unused"
        extra["Authorization"] = openai.Omit()
    else:
        api_key = os.environ.get(key_env)
        if api_key is None:
            raise SystemExit(f"environment variable {key_env} is not set")
    # No retries: a 429 or 5xx must reach the caller as it came, and counts stay exact.
    return openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=0, timeout=30.0), extra


def error_result(e: Exception) -> dict:
    err = {"class": type(e).__name__, "message": str(getattr(e, "message", e))}
    if isinstance(e, openai.APIStatusError):
        err.update(status=e.status_code, code=e.code, type=e.type, param=e.param)
    elif isinstance(e, openai.APIError):
        err.update(status=None, code=e.code, type=e.type, param=e.param)
    return {"ok": False, "error": err}


def do_chat(c: openai.OpenAI, extra: dict, case: dict) -> dict:
    kwargs = dict(model=case["model"], messages=case["messages"], extra_headers=extra or None)
    for k in ("temperature", "max_tokens", "tools", "tool_choice", "user"):
        if k in case:
            kwargs[k] = case[k]
    if not case.get("stream"):
        r = c.chat.completions.create(**kwargs)
        ch = r.choices[0]
        return {
            "ok": True,
            "id": r.id,
            "object": r.object,
            "model": r.model,
            "content": ch.message.content,
            "role": ch.message.role,
            "finish_reason": ch.finish_reason,
            "usage": r.usage.model_dump() if r.usage else None,
        }
    if "stream_options" in case:
        kwargs["stream_options"] = case["stream_options"]
    stream = c.chat.completions.create(stream=True, **kwargs)
    parts: list[str] = []
    chunks = 0
    content_chunks = 0
    finish = None
    role = None
    usage = None
    ids = set()
    model = None
    for chunk in stream:
        chunks += 1
        ids.add(chunk.id)
        model = chunk.model
        if chunk.usage is not None:
            usage = chunk.usage.model_dump()
        for ch in chunk.choices:
            if ch.delta.role:
                role = ch.delta.role
            if ch.delta.content:
                parts.append(ch.delta.content)
                content_chunks += 1
            if ch.finish_reason:
                finish = ch.finish_reason
    return {
        "ok": True,
        "content": "".join(parts),
        "parts": parts,
        "chunks": chunks,
        "content_chunks": content_chunks,
        "distinct_ids": len(ids),
        "model": model,
        "role": role,
        "finish_reason": finish,
        "usage": usage,
    }


def do_embeddings(c: openai.OpenAI, extra: dict, case: dict) -> dict:
    kwargs = dict(model=case["model"], input=case["input"], extra_headers=extra or None)
    if "encoding_format" in case:
        kwargs["encoding_format"] = case["encoding_format"]
    r = c.embeddings.create(**kwargs)
    return {
        "ok": True,
        "model": r.model,
        "count": len(r.data),
        "indexes": [d.index for d in r.data],
        "dims": [len(d.embedding) for d in r.data],
        "head": [list(d.embedding[:4]) for d in r.data],
    }


def do_models(c: openai.OpenAI, extra: dict, case: dict) -> dict:
    page = c.models.list(extra_headers=extra or None)
    return {"ok": True, "ids": sorted(m.id for m in page.data)}


OPS = {"chat": do_chat, "embeddings": do_embeddings, "models": do_models}


def run_case(case: dict) -> dict:
    c, extra = client_for(case.get("key_env", "PHIGATE_API_KEY"))
    extra = dict(extra)
    extra.update(case.get("headers") or {})
    op = OPS[case["op"]]
    repeat = int(case.get("repeat", 1))
    results = []
    for i in range(repeat):
        try:
            res = op(c, extra, case)
        except openai.OpenAIError as e:
            res = error_result(e)
        res["attempt"] = i + 1
        results.append(res)
        if case.get("stop_on_error") and not res["ok"]:
            break
    if repeat == 1:
        return results[0]
    last = results[-1]
    last["attempts"] = len(results)
    last["ok_count"] = sum(1 for r in results if r["ok"])
    return last


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="mode", required=True)
    sub.add_parser("batch", help="JSON array of cases on stdin; JSON object of results on stdout")
    sc = sub.add_parser("selfcheck", help="chat, stream, embeddings, models against OPENAI_BASE_URL")
    sc.add_argument("--model", required=True)
    sc.add_argument("--embed-model")
    sc.add_argument("--prompt", default="Patient John Smith, MRN 12345678, seen on 03/14/2024. Summarize.")
    args = ap.parse_args()

    if args.mode == "batch":
        cases = json.load(sys.stdin)
    else:
        msgs = [{"role": "user", "content": args.prompt}]
        cases = [
            {"name": "chat", "op": "chat", "model": args.model, "messages": msgs},
            {"name": "stream", "op": "chat", "model": args.model, "messages": msgs, "stream": True},
            {"name": "models", "op": "models"},
        ]
        if args.embed_model:
            cases.append({"name": "embeddings", "op": "embeddings", "model": args.embed_model, "input": [args.prompt, "second"]})

    out = {}
    for case in cases:
        t0 = time.perf_counter()
        res = run_case(case)
        res["elapsed_ms"] = round((time.perf_counter() - t0) * 1000, 2)
        out[case["name"]] = res
    json.dump(out, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except SystemExit:
        raise
    except BaseException as e:  # a bug here, not a refusal by the server
        print(f"phigate_sdk.py: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(2)
