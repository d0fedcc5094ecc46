#!/usr/bin/env python3
"""Runs phigate and the peer de-identification tools of ../shared/peers on the same input, side
by side, and prints each tool's throughput, its ratio to phigate and a rough accuracy.

    python3 scripts/bench_peers.py                      # the peers' 20-note sample and its gold
    python3 scripts/bench_peers.py NOTES.jsonl [GOLD]   # any {"id","text"} JSONL (gold: score.py format)
    python3 scripts/bench_peers.py --tools presidio,philter-lite --repeat 5

The peers are installed once (from PyPI, by the kit's setup.sh) into a copy of the kit under
~/.cache/phigate-peers (override with PEERS_DIR); nothing is written into ../shared.

How each is timed, so that the ratio is fair to the peers:
- peers: the kit's own timing, detection only (model loading and one warm-up note excluded),
  over the input repeated --repeat times, one Python process;
- phigate: the whole `phigate scan` command on one core (taskset, RAYON_NUM_THREADS=1), start-up,
  JSON parsing and output included, over the input repeated --phigate-repeat times.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOLS = {
    "presidio": ["presidio_deid.py", "--keep-org"],
    "presidio-rs": ["presidio_rs_deid.py"],
    "philter-lite": ["philter_deid.py", "--impl", "lite"],
    "philter-ucsf": ["philter_deid.py", "--impl", "ucsf"],
    "scrubadub": ["scrubadub_deid.py", "--preset", "default"],
}


def die(msg):
    print(f"bench_peers: {msg}", file=sys.stderr)
    sys.exit(1)


def peers_dir(src):
    dst = os.environ.get("PEERS_DIR", os.path.expanduser("~/.cache/phigate-peers"))
    if not os.path.isdir(src):
        die(f"{src}: the peers kit is not there (pass --peers-src)")
    if not os.path.exists(os.path.join(dst, "setup.sh")):
        shutil.copytree(src, dst, ignore=shutil.ignore_patterns("venv", "litellm-venv", "results"))
    if not os.path.exists(os.path.join(dst, "venv", "bin", "python")) or not os.path.exists(
        os.path.join(dst, "sample", "notes.jsonl")
    ):
        print(f"installing the peers into {dst} (once; a few minutes)...", file=sys.stderr)
        subprocess.run(["bash", "setup.sh"], cwd=dst, check=True)
    return dst


def count_chars(path):
    n = 0
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if line.strip():
                try:
                    n += len(json.loads(line)["text"])
                except (ValueError, KeyError) as e:
                    die(f"{path}:{lineno}: not a {{\"id\",\"text\"}} line ({type(e).__name__})")
    return n


def score(pdir, gold, notes, spans):
    out = subprocess.run(
        [os.path.join(pdir, "venv", "bin", "python"), os.path.join(pdir, "score.py"), gold, spans,
         "--notes", notes, "--json"],
        capture_output=True, text=True,
    )
    if out.returncode != 0:
        return None
    return json.loads(out.stdout)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("input", nargs="?", help="notes JSONL (default: the kit's sample/notes.jsonl)")
    ap.add_argument("gold", nargs="?", help="gold spans in score.py's format (default: the kit's)")
    ap.add_argument("--peers-src", default=os.path.join(os.path.dirname(ROOT), "shared", "peers"))
    ap.add_argument("--tools", default="presidio,presidio-rs,philter-lite,scrubadub",
                    help=f"comma-separated, from {','.join(TOOLS)}")
    ap.add_argument("--repeat", type=int, default=3, help="passes over the input for each peer")
    ap.add_argument("--phigate-repeat", type=int, default=None,
                    help="passes over the input for phigate (default: enough for about 20 MB)")
    a = ap.parse_args()

    pdir = peers_dir(a.peers_src)
    notes = os.path.abspath(a.input or os.path.join(pdir, "sample", "notes.jsonl"))
    gold = a.gold or (os.path.join(pdir, "sample", "gold.jsonl") if not a.input else None)
    chars = count_chars(notes)
    if a.phigate_repeat is None:
        a.phigate_repeat = max(1, -(-20_000_000 // max(1, os.path.getsize(notes))))
    print(f"input: {notes} ({chars} characters)", file=sys.stderr)

    subprocess.run(["cargo", "build", "--release", "-q", "-p", "phigate"], cwd=ROOT, check=True)
    exe = os.path.join(ROOT, "target", "release", "phigate")
    work = tempfile.mkdtemp(prefix="phigate-bench-")
    rows = []

    # phigate: the input repeated, one core, the whole command.
    big = os.path.join(work, "repeated.jsonl")
    with open(notes, encoding="utf-8") as f:
        body = f.read()
    if not body.endswith("\n"):
        body += "\n"
    with open(big, "w", encoding="utf-8") as f:
        for _ in range(a.phigate_repeat):
            f.write(body)
    one_core = ["taskset", "-c", "0"] if shutil.which("taskset") else []
    env = dict(os.environ, RAYON_NUM_THREADS="1")
    t0 = time.perf_counter()
    subprocess.run(one_core + [exe, "scan", big], stdout=subprocess.DEVNULL, env=env, check=True)
    wall = time.perf_counter() - t0
    spans = os.path.join(work, "phigate.spans.jsonl")
    with open(spans, "w") as out:
        scan = subprocess.run([exe, "scan", notes], capture_output=True, text=True, check=True)
        for line in scan.stdout.splitlines():
            d = json.loads(line)
            d["type"] = d.pop("category")
            out.write(json.dumps(d) + "\n")
    phigate_cps = chars * a.phigate_repeat / wall
    rows.append(("phigate", phigate_cps, spans))

    for tool in [t for t in a.tools.split(",") if t]:
        if tool not in TOOLS:
            die(f"unknown tool {tool!r}; choose from {','.join(TOOLS)}")
        script, *args = TOOLS[tool]
        spans = os.path.join(work, f"{tool}.spans.jsonl")
        timing = os.path.join(work, f"{tool}.timing.json")
        r = subprocess.run(
            [os.path.join(pdir, "venv", "bin", "python"), os.path.join(pdir, script), *args, notes,
             "-o", spans, "--repeat", str(a.repeat), "--timing-json", timing],
            cwd=pdir, capture_output=True, text=True,
        )
        if r.returncode != 0:
            print(f"{tool}: failed (exit {r.returncode}); its stderr ends with:\n{r.stderr[-600:]}",
                  file=sys.stderr)
            continue
        with open(timing) as f:
            rows.append((tool, json.load(f)["chars_per_s"], spans))

    print(f"{'tool':<14} {'chars/s':>12} {'MB/s':>8} {'phigate is':>12} {'char recall':>12} {'char prec':>10}")
    for tool, cps, spans in rows:
        s = score(pdir, gold, notes, spans) if gold else None
        rec = f"{s['char_R']:.3f}" if s else "-"
        prec = f"{s['char_P']:.3f}" if s else "-"
        ratio = "1x" if tool == "phigate" else f"{phigate_cps / cps:,.0f}x faster"
        print(f"{tool:<14} {cps:>12,.0f} {cps / 1e6:>8.3f} {ratio:>12} {rec:>12} {prec:>10}")
    print(f"(peers: detection only, x{a.repeat}; phigate: whole command on one core, x{a.phigate_repeat}; "
          f"spans and timings kept in {work})")


if __name__ == "__main__":
    main()
