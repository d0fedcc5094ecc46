#!/usr/bin/env bash
# Load benchmark of `phigate serve`, printing figures (nothing here asserts a time).
#
#   scripts/bench_gateway.sh [SOAK_SECONDS]      # default 60; the target soak is 600
#
# What it does, all on 127.0.0.1, every load bounded in time and stopping by itself:
#  1. builds phigate (the `dist` profile: release with whole-program optimisation, what a
#     deployment runs) and scripts/loadgen (own manifest, target/loadgen);
#  2. starts a fast OpenAI-compatible upstream (loadgen's `upstream --mode fixed`, 1 thread);
#  3. starts `phigate serve` in front of it with every check on (scan, tokenize into the vault,
#     output scan, re-identification, rate limiter, ledger on SQLite), a key for a clinician;
#  4. body: a 2 KB clinical note full of PHI (scripts/loadgen/data/prompt_2k.txt);
#  5. latency at a constant 1,000 requests/s (open loop): direct to the upstream, then through
#     phigate; p50/p99 of each, the difference is what phigate adds (target: <= 1 ms at p99);
#     phigate's /metrics scraped around that run give each stage's mean and p50/p90/p99 there
#     (the profile by stage: which stage the tail comes from);
#  6. maximum throughput through phigate (wrk, closed loop; target >= 10,000 requests/s on 2
#     cores with the load generator on the same cores), median of WRK_RUNS runs;
#  6b. the re-identification path: a second upstream echoes the tokenized note back, so every
#     answer's 13 placeholders are restored (vault reveal, its record in a second commit);
#     latency at RATE and maximum throughput;
#  7. RSS of phigate sampled every second during a SOAK_SECONDS run at 1,000 requests/s, with
#     its anonymous (heap), file-backed and shared-memory parts;
#  8. the same loads against the LiteLLM proxy (peer), with the ratios.
#
# Environment: MEASURE_S (seconds per latency/throughput run, default 10), RATE (default 1000),
# WRK_CONNS (default 64), WRK_RUNS (throughput runs through phigate, the median reported;
# default 5), LITELLM_VENV (a venv with litellm[proxy]; default: the peers' one if present, else
# /tmp/litellm-venv, installed there if missing unless NO_LITELLM=1), LITELLM_WORKERS (default 1,
# as the peers' start_proxy.sh runs it), SQLITE_SYNC (full, the default, or normal: phigate's
# store.sqlite_sync), KEEP_WORK=1 (keep the temp dir: configs, logs, rss.txt, JSON results),
# TMPDIR (where that temp dir goes, phigate's database and journal with it; default /tmp: on the
# disk here; /dev/shm, a tmpfs, measures the gateway without the disk's flushes),
# PHIGATE_BIN (measure this phigate binary instead of building one), COMPARE_BIN (another build:
# only alternated throughput runs of both, COMPARE_PAIRS pairs (default 4), body COMPARE_BODY:
# phigate, nophi, unique or reveal; COMPARE_LATENCY=1: latency at RATE instead), INSTRUCTIONS=1 (instructions a request costs, counted by
# callgrind, for PHIGATE_BIN and COMPARE_BIN; N1, N2: the two request counts).
# Needs: cargo, python3, curl, wrk (apt-get install -y wrk).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
SOAK_S=${1:-60}
MEASURE_S=${MEASURE_S:-10}
RATE=${RATE:-1000}
WRK_CONNS=${WRK_CONNS:-64}
WRK_RUNS=${WRK_RUNS:-5}
PEERS="$ROOT/../shared/peers"
[ -d "$PEERS" ] || PEERS=/work/shared/peers

command -v wrk >/dev/null || { echo "wrk is missing: apt-get install -y wrk" >&2; exit 1; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/phigate-bench.XXXXXX")
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ "${KEEP_WORK:-0}" = 1 ]; then echo "kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

log() { echo "== $*" >&2; }

# A free loopback port (bound then released).
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1]);s.close()'; }

wait_http() { # url [seconds]
  for _ in $(seq 1 $(( ${2:-30} * 10 ))); do
    curl -s -o /dev/null "$1" && return 0
    sleep 0.1
  done
  echo "no answer from $1" >&2; return 1
}

log "build (dist profile: release + LTO): phigate, loadgen"
if [ -n "${PHIGATE_BIN:-}" ]; then
  PHIGATE=$PHIGATE_BIN   # another build to measure (an earlier commit, say)
else
  cargo build --profile dist -q -p phigate
  PHIGATE=$ROOT/target/dist/phigate
fi
cargo build --release -q --manifest-path scripts/loadgen/Cargo.toml --target-dir target/loadgen
LG=$ROOT/target/loadgen/release

# The 2 KB prompt with PHI, as a chat completion body.
python3 - "$ROOT/scripts/loadgen/data/prompt_2k.txt" "$WORK" <<'EOF'
import json, sys
note = open(sys.argv[1]).read()
clean = open(sys.argv[1].replace("prompt_2k.txt", "prompt_2k_nophi.txt")).read()
# "unique": wrk puts a request counter where @@N@@ stands, so every request is a new note and a
# new conversation (nothing cached: a scan, a new vault scope, new values stored).
for name, model, text in (("phigate", "clinical-chat", note), ("direct", "bench-model", note),
                          ("reveal", "clinical-echo", note),
                          ("litellm", "local-llm", note), ("nophi", "clinical-chat", clean),
                          ("unique", "clinical-chat", "Visit @@N@@. " + note)):
    body = {"model": model, "messages": [{"role": "system", "content": "You write discharge letters."},
                                         {"role": "user", "content": text}], "max_tokens": 200}
    open(f"{sys.argv[2]}/body_{name}.json", "w").write(json.dumps(body))
EOF
log "body: $(wc -c < "$WORK/body_phigate.json") bytes"

log "upstream (fixed answer, 1 thread)"
UP_PORT=$(free_port)
"$LG/upstream" --mode fixed --threads 1 --listen 127.0.0.1:"$UP_PORT" > "$WORK/upstream.log" 2>&1 &
PIDS+=($!)
wait_http "http://127.0.0.1:$UP_PORT/healthz"
# A second upstream that echoes the (tokenized) user message back: its answers are full of
# placeholders, so phigate re-identifies every one (vault reveal, a reveal record in the ledger).
ECHO_PORT=$(free_port)
"$LG/upstream" --mode echo --threads 1 --listen 127.0.0.1:"$ECHO_PORT" > "$WORK/upstream_echo.log" 2>&1 &
PIDS+=($!)
wait_http "http://127.0.0.1:$ECHO_PORT/healthz"

log "phigate serve (every check on, ledger on SQLite)"
GW_PORT=$(free_port)
mkdir -p "$WORK/gw"
python3 -c 'import os,base64;print(base64.b64encode(os.urandom(32)).decode())' > "$WORK/gw/hmac.key"
python3 -c 'import os,base64;print(base64.b64encode(os.urandom(32)).decode())' > "$WORK/gw/ledger.key"
python3 -c 'import os,base64;print(base64.b64encode(os.urandom(32)).decode())' > "$WORK/gw/vault.kek"
chmod 600 "$WORK"/gw/*.key "$WORK/gw/vault.kek"
cat > "$WORK/gw/phigate.yaml" <<EOF
server:
  listen: 127.0.0.1:$GW_PORT
  max_body_bytes: 1048576
  data_dir: $WORK/gw/data
store:
  url: sqlite://$WORK/gw/data/phigate.db
  sqlite_sync: ${SQLITE_SYNC:-full}
audit:
  hmac_key: file:$WORK/gw/hmac.key
  signing_key: file:$WORK/gw/ledger.key
  checkpoint_interval_secs: 300
vault:
  kek: file:$WORK/gw/vault.kek
  retention_secs: 2592000
organization:
  blocked_categories: [SSN]
  require_baa_for_phi: true
providers:
  - name: bench-upstream
    kind: openai
    base_url: http://127.0.0.1:$UP_PORT/v1
    hosting: private
    timeout_ms: 30000
    retries: 1
  - name: bench-echo
    kind: openai
    base_url: http://127.0.0.1:$ECHO_PORT/v1
    hosting: private
    timeout_ms: 30000
    retries: 1
models:
  - name: clinical-chat
    deployments:
      - { provider: bench-upstream, model: bench-model, weight: 1 }
  - name: clinical-echo
    deployments:
      - { provider: bench-echo, model: bench-model, weight: 1 }
roles: [clinician]
use_cases:
  - name: clinical-notes
    purpose: treatment
    roles: [clinician]
    models: [clinical-chat, clinical-echo]
    phi:
      default: tokenize
    output:
      reidentify_roles: [clinician]
      new_phi: redact
      stream_scan: holdback
    prompt_injection: flag
limits:
  - { role: clinician, requests_per_minute: 100000000, tokens_per_minute: 100000000000 }
EOF
mkdir -p "$WORK/gw/data"
"$PHIGATE" config check --config "$WORK/gw/phigate.yaml" >&2
PHIGATE_KEY=$("$PHIGATE" keys create --config "$WORK/gw/phigate.yaml" --identity svc:bench \
  --roles clinician --use-case clinical-notes | grep -o 'pg_[A-Za-z0-9_-]*' | head -n1)
[ -n "$PHIGATE_KEY" ] || { echo "could not create an API key" >&2; exit 1; }
export PHIGATE_KEY
# INSTRUCTIONS=1: instructions a request costs (user space, counted by valgrind's callgrind),
# for each of PHIGATE_BIN and COMPARE_BIN if set, then exit. Unlike a time, the count barely
# moves from run to run, so a change of a few percent shows. The server runs under callgrind
# twice, answering N1 then N2 requests (one keep-alive connection, one at a time) between its
# start and a clean stop; (count2 - count1) / (N2 - N1) is the figure, each count net of the
# clock calibration's spin at start (see count() below). Caveat: under valgrind
# SHA-256 runs in software (no SHA-NI), about half the count; on the CPU it is a few percent.
if [ -n "${INSTRUCTIONS:-}" ]; then
  command -v valgrind >/dev/null || { echo "valgrind is missing: apt-get install -y valgrind" >&2; exit 1; }
  N1=${N1:-300}; N2=${N2:-1300}
  count() { # binary n
    local d="$WORK/ir_$2" out
    rm -rf "$d"; mkdir -p "$d/data"
    sed -e "s#$WORK/gw/data#$d/data#g" "$WORK/gw/phigate.yaml" > "$d/phigate.yaml"
    local key; key=$("$1" keys create --config "$d/phigate.yaml" --identity svc:bench \
      --roles clinician --use-case clinical-notes | grep -o 'pg_[A-Za-z0-9_-]*' | head -n1)
    valgrind --tool=callgrind --cache-sim=no --callgrind-out-file="$d/callgrind.out" \
      "$1" serve --config "$d/phigate.yaml" > "$d/serve.log" 2>&1 &
    local vp=$!
    wait_http "http://127.0.0.1:$GW_PORT/healthz" 120
    python3 - "$GW_PORT" "$key" "$WORK/body_phigate.json" "$2" <<'EOF2'
import http.client, sys
port, key, body, n = int(sys.argv[1]), sys.argv[2], open(sys.argv[3], "rb").read(), int(sys.argv[4])
c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
for _ in range(n):
    c.request("POST", "/v1/chat/completions", body, {"Authorization": "Bearer " + key, "Content-Type": "application/json"})
    r = c.getresponse(); r.read()
    if r.status != 200:
        sys.exit(f"phigate answered {r.status}")
EOF2
    kill -TERM "$vp"; wait "$vp" || true
    # The count, less what a clock's start-up calibration spun (`quanta`'s, a OnceCell that
    # loops for a fixed wall time, and clock_gettime): under valgrind it varies from run to run
    # by tens of millions of instructions, which would move the figure by percents.
    callgrind_annotate --auto=no --threshold=100 --inclusive=no "$d/callgrind.out" | python3 -c '
import re, sys
total = spin = 0
for line in sys.stdin:
    m = re.match(r"^\s*([\d,]+)\s+\(\s*[\d.]+%\)\s+(.*)$", line)
    if not m or "=>" in line:
        continue
    n = int(m.group(1).replace(",", ""))
    if m.group(2).startswith("PROGRAM TOTALS"):
        total = n
    elif "OnceCell<T>::initialize" in m.group(2) or "clock_gettime" in m.group(2):
        spin += n
print(total - spin)'
  }
  for b in "$PHIGATE" ${COMPARE_BIN:-}; do
    c1=$(count "$b" "$N1"); c2=$(count "$b" "$N2")
    echo "$b: $(( (c2 - c1) / (N2 - N1) )) instructions a request (callgrind; $N1 requests: $c1, $N2: $c2)"
  done
  exit 0
fi

"$PHIGATE" serve --config "$WORK/gw/phigate.yaml" > "$WORK/phigate.log" 2>&1 &
GW_PID=$!
PIDS+=($GW_PID)
wait_http "http://127.0.0.1:$GW_PORT/healthz"

# One request by hand: it must succeed, and the upstream must have seen no PHI (checked by the
# SDK tests; here only the status).
code=$(curl -s -o "$WORK/one.json" -w '%{http_code}' "http://127.0.0.1:$GW_PORT/v1/chat/completions" \
  -H "Authorization: Bearer $PHIGATE_KEY" -H 'Content-Type: application/json' --data-binary @"$WORK/body_phigate.json")
[ "$code" = 200 ] || { echo "phigate answered $code: $(cat "$WORK/one.json")" >&2; exit 1; }
# Through the echo upstream the answer comes back with every placeholder restored.
code=$(curl -s -o "$WORK/one_reveal.json" -w '%{http_code}' "http://127.0.0.1:$GW_PORT/v1/chat/completions" \
  -H "Authorization: Bearer $PHIGATE_KEY" -H 'Content-Type: application/json' --data-binary @"$WORK/body_reveal.json")
[ "$code" = 200 ] || { echo "phigate answered $code (echo): $(head -c 300 "$WORK/one_reveal.json")" >&2; exit 1; }
if grep -q '\[NAME_[0-9]' "$WORK/one_reveal.json"; then echo "placeholders were not restored" >&2; exit 1; fi

DIRECT_URL=http://127.0.0.1:$UP_PORT/v1/chat/completions
GW_URL=http://127.0.0.1:$GW_PORT/v1/chat/completions

# loadgen JSON -> shell-readable fields
field() { python3 -c 'import json,sys;d=json.load(open(sys.argv[1]));v=d
for k in sys.argv[2].split("."): v=v[k]
print(v)' "$1" "$2"; }

run_rate() { # label url body auth_env out
  "$LG/loadgen" --url "$2" --body "$3" ${4:+--auth-env "$4"} --rate "$RATE" --duration "$MEASURE_S" \
    --warmup 3 --connections 64 --label "$1" > "$5"
}

run_wrk() { # label url body auth_env
  cat > "$WORK/post.lua" <<'EOF'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local key = os.getenv("WRK_AUTH")
if key and key ~= "" then wrk.headers["Authorization"] = "Bearer " .. key end
local f = assert(io.open(os.getenv("WRK_BODY"), "rb"))
wrk.body = f:read("*a")
f:close()
local n = 0
if string.find(wrk.body, "@@N@@", 1, true) then
  request = function()
    n = n + 1
    return wrk.format(nil, nil, nil, (string.gsub(wrk.body, "@@N@@", tostring(n))))
  end
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "WRKJSON {\"requests\":%d,\"duration_us\":%d,\"socket_errors\":%d,\"non_2xx\":%d,\"p50_ms\":%.3f,\"p99_ms\":%.3f}\n",
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
EOF
  local auth=""
  [ -n "${4:-}" ] && auth=${!4}
  WRK_AUTH=$auth WRK_BODY=$3 wrk -t1 -c"$WRK_CONNS" -d"${MEASURE_S}s" --timeout 10s -s "$WORK/post.lua" "$2" \
    > "$WORK/wrk_$1.txt" 2>&1
  local j; j=$(sed -n 's/^WRKJSON //p' "$WORK/wrk_$1.txt")
  python3 - "$1" "$j" "$MEASURE_S" <<'EOF'
import json, sys
label, j, secs = sys.argv[1], json.loads(sys.argv[2]), float(sys.argv[3])
rps = j["requests"] / (j["duration_us"] / 1e6)
print(f"{label:<28} {rps:>9.0f} req/s   p50 {j['p50_ms']:.3f} ms  p99 {j['p99_ms']:.3f} ms  "
      f"non-2xx {j['non_2xx']}  socket errors {j['socket_errors']}")
EOF
  python3 -c 'import json,sys;j=json.loads(sys.argv[1]);print(j["requests"]/(j["duration_us"]/1e6))' "$j" > "$WORK/rps_$1"
}

# COMPARE_BIN: a second build beside the first, the same config on its own port and data
# directory; only the saturated throughput, alternated A B B A ... over COMPARE_PAIRS pairs
# (this VM's run-to-run spread is +-10-15%: one run of each says nothing), then exit.
# Run it twice, the second time with the two builds swapped: the same build measured against
# itself (11th session) came out 17.6% and 0.2% faster as B; a
# difference that does not hold in both orders is not one.
if [ -n "${COMPARE_BIN:-}" ]; then
  B_PORT=$(free_port)
  mkdir -p "$WORK/gw_b/data"
  sed -e "s#127.0.0.1:$GW_PORT#127.0.0.1:$B_PORT#" -e "s#$WORK/gw/data#$WORK/gw_b/data#g" \
    "$WORK/gw/phigate.yaml" > "$WORK/gw_b/phigate.yaml"
  B_KEY=$("$COMPARE_BIN" keys create --config "$WORK/gw_b/phigate.yaml" --identity svc:bench \
    --roles clinician --use-case clinical-notes | grep -o 'pg_[A-Za-z0-9_-]*' | head -n1)
  export B_KEY
  "$COMPARE_BIN" serve --config "$WORK/gw_b/phigate.yaml" > "$WORK/phigate_b.log" 2>&1 &
  B_PID=$!
  PIDS+=($B_PID)
  wait_http "http://127.0.0.1:$B_PORT/healthz"
  B_URL=http://127.0.0.1:$B_PORT/v1/chat/completions
  BODY=$WORK/body_${COMPARE_BODY:-phigate}.json
  echo "A: $PHIGATE"
  echo "B: $COMPARE_BIN"
  echo "body: $(basename "$BODY"), wrk -t1 -c$WRK_CONNS, ${MEASURE_S}s a run"
  run_wrk warm_a "$GW_URL" "$BODY" PHIGATE_KEY >/dev/null
  run_wrk warm_b "$B_URL" "$BODY" B_KEY >/dev/null
  # COMPARE_LATENCY=1: the latency at RATE instead (loadgen, open loop), alternated likewise.
  if [ -n "${COMPARE_LATENCY:-}" ]; then
    echo "latency at $RATE req/s (loadgen, ${MEASURE_S}s after 3s warm-up), service time"
    for i in $(seq 1 "${COMPARE_PAIRS:-4}"); do
      if [ $((i % 2)) = 1 ]; then order="a b"; else order="b a"; fi
      for x in $order; do
        if [ "$x" = a ]; then run_rate "a_$i" "$GW_URL" "$BODY" PHIGATE_KEY "$WORK/lat_a_$i.json"
        else run_rate "b_$i" "$B_URL" "$BODY" B_KEY "$WORK/lat_b_$i.json"; fi
      done
    done
    python3 - "$WORK" "${COMPARE_PAIRS:-4}" <<'EOF2'
import json, statistics, sys
w, n = sys.argv[1], int(sys.argv[2])
for x in "ab":
    r = [json.load(open(f"{w}/lat_{x}_{i}.json"))["service"] for i in range(1, n + 1)]
    p50, p99 = [q["p50_ms"] for q in r], [q["p99_ms"] for q in r]
    print(f"{x.upper()} p50 median {statistics.median(p50):.3f} ms, p99 median {statistics.median(p99):.3f} ms "
          f"(p99s: {', '.join(f'{v:.3f}' for v in p99)})")
a = [json.load(open(f"{w}/lat_a_{i}.json"))["service"]["p99_ms"] for i in range(1, n + 1)]
b = [json.load(open(f"{w}/lat_b_{i}.json"))["service"]["p99_ms"] for i in range(1, n + 1)]
print(f"pairs where B's p99 was lower: {sum(1 for x, y in zip(a, b) if y < x)} of {n}")
EOF2
    exit 0
  fi
  # CPU time of the server (user + system, from /proc) per request answered: steadier than
  # the throughput, which also moves with the load generator's and the upstream's share.
  cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
  for i in $(seq 1 "${COMPARE_PAIRS:-4}"); do
    if [ $((i % 2)) = 1 ]; then order="a b"; else order="b a"; fi
    for x in $order; do
      if [ "$x" = a ]; then pid=$GW_PID; else pid=$B_PID; fi
      t0=$(cpu_ticks "$pid")
      if [ "$x" = a ]; then run_wrk "a_$i" "$GW_URL" "$BODY" PHIGATE_KEY
      else run_wrk "b_$i" "$B_URL" "$BODY" B_KEY; fi
      t1=$(cpu_ticks "$pid")
      python3 -c 'import sys;t,r,s,hz=map(float,sys.argv[1:]);print(f"  server CPU {1e6*t/hz/(r*s):.1f} us a request")' \
        "$((t1 - t0))" "$(cat "$WORK/rps_${x}_$i")" "$MEASURE_S" "$(getconf CLK_TCK)" | tee "$WORK/cpu_${x}_$i"
    done
  done
  python3 - "$WORK" "${COMPARE_PAIRS:-4}" <<'EOF2'
import statistics, sys
w, n = sys.argv[1], int(sys.argv[2])
a = [float(open(f"{w}/rps_a_{i}").read()) for i in range(1, n + 1)]
b = [float(open(f"{w}/rps_b_{i}").read()) for i in range(1, n + 1)]
print(f"A median {statistics.median(a):.0f} req/s ({', '.join(f'{x:.0f}' for x in a)})")
print(f"B median {statistics.median(b):.0f} req/s ({', '.join(f'{x:.0f}' for x in b)})")
print(f"B/A {statistics.median(b) / statistics.median(a):.3f}; pairs where B beat A: "
      f"{sum(1 for x, y in zip(a, b) if y > x)} of {n}")
cpu = lambda x: [float(open(f"{w}/cpu_{x}_{i}").read().split()[2]) for i in range(1, n + 1)]
ca, cb = cpu("a"), cpu("b")
print(f"server CPU a request: A median {statistics.median(ca):.1f} us ({', '.join(f'{x:.1f}' for x in ca)}), "
      f"B median {statistics.median(cb):.1f} us ({', '.join(f'{x:.1f}' for x in cb)}); B/A {statistics.median(cb) / statistics.median(ca):.3f}")
EOF2
  exit 0
fi

echo
echo "phigate gateway benchmark — $(date -u +%FT%TZ), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "body $(wc -c < "$WORK/body_phigate.json") bytes (2 KB note with names, dates, MRN, phone, email, address); store.sqlite_sync: ${SQLITE_SYNC:-full}"
echo
echo "-- latency at $RATE requests/s (open loop, ${MEASURE_S}s after 3s warm-up; service time per request)"
run_rate direct "$DIRECT_URL" "$WORK/body_direct.json" "" "$WORK/lat_direct.json"
curl -s "http://127.0.0.1:$GW_PORT/metrics" > "$WORK/metrics_rate_before.txt"
run_rate phigate "$GW_URL" "$WORK/body_phigate.json" PHIGATE_KEY "$WORK/lat_phigate.json"
curl -s "http://127.0.0.1:$GW_PORT/metrics" > "$WORK/metrics_rate_after.txt"
python3 - "$WORK/lat_direct.json" "$WORK/lat_phigate.json" <<'EOF'
import json, sys
d, g = (json.load(open(p)) for p in sys.argv[1:3])
for name, r in (("direct to upstream", d), ("through phigate", g)):
    s, c = r["service"], r["corrected"]
    print(f"{name:<20} p50 {s['p50_ms']:.3f} ms  p99 {s['p99_ms']:.3f} ms  p99.9 {s['p999_ms']:.3f} ms  "
          f"(from schedule: p99 {c['p99_ms']:.3f} ms)  ok {r['ok']}  non-2xx {r['non_2xx']}  io errors {r['io_errors']}")
print(f"{'added by phigate':<20} p50 {g['service']['p50_ms'] - d['service']['p50_ms']:.3f} ms  "
      f"p99 {g['service']['p99_ms'] - d['service']['p99_ms']:.3f} ms   (target: p99 <= 1 ms)")
EOF

echo
echo "-- maximum throughput (wrk -t1 -c$WRK_CONNS, ${MEASURE_S}s, closed loop; generator on the same 2 cores)"
run_wrk direct "$DIRECT_URL" "$WORK/body_direct.json" ""
# Runs on this shared 2-core VM vary by +-8% from one 10 s run to the next: several runs, and
# their median.
for i in $(seq 1 "$WRK_RUNS"); do
  run_wrk "phigate_run$i" "$GW_URL" "$WORK/body_phigate.json" PHIGATE_KEY
done
python3 - "$WORK" "$WRK_RUNS" <<'EOF2'
import statistics, sys
r = [float(open(f"{sys.argv[1]}/rps_phigate_run{i}").read()) for i in range(1, int(sys.argv[2]) + 1)]
print(f"{'phigate, median of ' + str(len(r)):<28} {statistics.median(r):>9.0f} req/s   (runs: {', '.join(f'{x:.0f}' for x in r)})")
open(f"{sys.argv[1]}/rps_phigate", "w").write(str(statistics.median(r)))
EOF2
echo "(target through phigate: >= 10000 req/s)"
run_wrk phigate_no_phi "$GW_URL" "$WORK/body_nophi.json" PHIGATE_KEY
echo "(the same through phigate with a 1.9 KB note that holds no PHI: scan only, no vault, no reveal)"
run_wrk phigate_unique "$GW_URL" "$WORK/body_unique.json" PHIGATE_KEY
echo "(every request a new note in a new conversation: scanned, a new vault scope and 13 new values stored)"

echo
echo "-- re-identification: an upstream that echoes the tokenized note back (13 placeholders in every answer)"
ECHO_URL=http://127.0.0.1:$ECHO_PORT/v1/chat/completions
run_rate direct_echo "$ECHO_URL" "$WORK/body_direct.json" "" "$WORK/lat_direct_echo.json"
run_rate phigate_reveal "$GW_URL" "$WORK/body_reveal.json" PHIGATE_KEY "$WORK/lat_reveal.json"
python3 - "$WORK/lat_direct_echo.json" "$WORK/lat_reveal.json" "$RATE" <<'EOF2'
import json, sys
d, g = (json.load(open(p)) for p in sys.argv[1:3])
print(f"at {sys.argv[3]} req/s: direct to the echo upstream p50 {d['service']['p50_ms']:.3f} / p99 {d['service']['p99_ms']:.3f} ms; "
      f"through phigate p50 {g['service']['p50_ms']:.3f} / p99 {g['service']['p99_ms']:.3f} ms (ok {g['ok']}, non-2xx {g['non_2xx']}); "
      f"added p50 {g['service']['p50_ms'] - d['service']['p50_ms']:.3f} / p99 {g['service']['p99_ms'] - d['service']['p99_ms']:.3f} ms")
EOF2
run_wrk phigate_reveal "$GW_URL" "$WORK/body_reveal.json" PHIGATE_KEY
echo "(every answer's 13 placeholders restored: the answer scanned for new PHI, 13 values decrypted, the request's record committed before the send, the reveal's after the answer)"

echo
echo "-- where phigate's time goes at $RATE req/s (its /metrics scraped around the latency run above, warm-up included)"
python3 - "$WORK/metrics_rate_before.txt" "$WORK/metrics_rate_after.txt" <<'EOF'
import collections, re, sys
def load(path):
    buckets, sums, counts = collections.defaultdict(dict), {}, {}
    for line in open(path):
        m = re.match(r'(phigate_\w+?)_(bucket|sum|count)(?:\{(.*)\})? (\S+)$', line)
        if not m:
            continue
        name, kind, labels, v = m.group(1), m.group(2), m.group(3) or "", float(m.group(4))
        lab = dict(re.findall(r'(\w+)="([^"]*)"', labels))
        le = lab.pop("le", None)
        key = (name, ",".join(f'{k}="{v}"' for k, v in sorted(lab.items())))
        if kind == "bucket":
            buckets[key][le] = v
        else:
            (sums if kind == "sum" else counts)[key] = v
    return buckets, sums, counts
(b0, s0, c0), (b1, s1, c1) = load(sys.argv[1]), load(sys.argv[2])
rows = []
for key, bk in b1.items():
    n = c1.get(key, 0) - c0.get(key, 0)
    if n <= 0 or not (key[0].endswith("_seconds") or key[0] == "phigate_ledger_batch_records"):
        continue
    les = sorted(bk, key=lambda x: float("inf") if x == "+Inf" else float(x))
    d = [bk[l] - b0.get(key, {}).get(l, 0) for l in les]
    q = lambda p: next(l for l, c in zip(les, d) if c >= p * n)
    rows.append(((s1[key] - s0.get(key, 0)) / n, key, n, q(.5), q(.9), q(.99)))
print("(mean from the histogram sums; p50 / p90 / p99: the histogram bucket each falls in, an upper bound)")
for mean, key, n, p50, p90, p99 in sorted(rows, key=lambda r: (not r[1][0].endswith("_seconds"), -r[0])):
    seconds = key[0].endswith("_seconds")
    name = key[0].replace("phigate_", "") + (f"{{{key[1]}}}" if key[1] else "")
    unit = (lambda x: "+Inf" if x == "+Inf" else f"{float(x) * 1000:g} ms") if seconds else str
    m = f"{mean * 1000:8.3f} ms" if seconds else f"{mean:8.2f}   "
    print(f"{name:<44} n {int(n):>6}  mean {m}  p50 <= {unit(p50):<9} p90 <= {unit(p90):<9} p99 <= {unit(p99)}")
EOF

echo
echo "-- where phigate's time goes over the whole run (stage means so far, saturation runs included)"
curl -s "http://127.0.0.1:$GW_PORT/metrics" > "$WORK/metrics.txt"
python3 - "$WORK/metrics.txt" <<'EOF'
import re, sys
sums, counts = {}, {}
for line in open(sys.argv[1]):
    m = re.match(r'phigate_(stage|request)_seconds_(sum|count)\{(?:stage|route)="([^"]+)"\} ([0-9.e+-]+)', line)
    if m:
        (sums if m.group(2) == "sum" else counts)[(m.group(1), m.group(3))] = float(m.group(4))
    m = re.match(r'phigate_ledger_commit_seconds_(sum|count) ([0-9.e+-]+)', line)
    if m:
        (sums if m.group(1) == "sum" else counts)[("ledger", "commit (one per batch)")] = float(m.group(2))
for k in sorted(sums, key=lambda k: -sums[k] / max(counts.get(k, 1), 1)):
    n = counts.get(k, 0)
    if n:
        print(f"{k[0]:<8} {k[1]:<24} mean {sums[k] / n * 1000:8.3f} ms over {int(n)}")
EOF

echo
echo "-- memory: phigate RSS every second during ${SOAK_S}s at $RATE requests/s"
: > "$WORK/rss.txt"
"$LG/loadgen" --url "$GW_URL" --body "$WORK/body_phigate.json" --auth-env PHIGATE_KEY --rate "$RATE" \
  --duration "$SOAK_S" --warmup 0 --connections 64 --label soak > "$WORK/soak.json" &
LOAD_PID=$!
PIDS+=($LOAD_PID)
while kill -0 "$LOAD_PID" 2>/dev/null; do
  # VmRSS, then its parts: anonymous (the heap), file-backed, shared memory (SQLite's -shm).
  awk '/^(VmRSS|RssAnon|RssFile|RssShmem)/ {v[$1]=$2}
       END {print v["VmRSS:"], v["RssAnon:"], v["RssFile:"], v["RssShmem:"]}' \
    "/proc/$GW_PID/status" >> "$WORK/rss.txt" 2>/dev/null || true
  sleep 1
done
wait "$LOAD_PID" || true
python3 - "$WORK/rss.txt" "$WORK/soak.json" <<'EOF'
import json, sys
rows = [[int(x) / 1024 for x in line.split()] for line in open(sys.argv[1]) if line.strip()]
soak = json.load(open(sys.argv[2]))
n = len(rows)
q = max(1, n // 4)
for col, name in ((0, "RSS"), (1, "anonymous (heap)"), (2, "file-backed"), (3, "shared memory")):
    rss = [r[col] for r in rows if len(r) > col]
    if len(rss) != n:
        continue
    first, last = sum(rss[:q]) / q, sum(rss[-q:]) / q
    print(f"{name} MiB: first {rss[0]:.1f}  max {max(rss):.1f}  last {rss[-1]:.1f}  "
          f"mean of first quarter {first:.1f}  mean of last quarter {last:.1f}  ({n} samples)")
    print(f"  at each tenth of the run: " + "  ".join(f"{rss[min(n - 1, i * n // 10)]:.1f}" for i in range(11)))
print(f"soak: {soak['requests']} requests, ok {soak['ok']}, non-2xx {soak['non_2xx']}, io errors {soak['io_errors']}, "
      f"p99 {soak['service']['p99_ms']:.3f} ms")
EOF

# ---- the peer: LiteLLM proxy in front of the same upstream
if [ "${NO_LITELLM:-0}" = 1 ]; then exit 0; fi
LITELLM_VENV=${LITELLM_VENV:-}
if [ -z "$LITELLM_VENV" ]; then
  if [ -x "$PEERS/litellm-venv/bin/litellm" ]; then LITELLM_VENV=$PEERS/litellm-venv; else LITELLM_VENV=/tmp/litellm-venv; fi
fi
if [ ! -x "$LITELLM_VENV/bin/litellm" ]; then
  log "installing litellm[proxy] into $LITELLM_VENV (the peers folder is read-only)"
  python3 -m venv "$LITELLM_VENV"
  PIP_CACHE_DIR=${PIP_CACHE_DIR:-/tmp/pipcache} "$LITELLM_VENV/bin/pip" install -q 'litellm[proxy]'
fi
LL_PORT=$(free_port)
sed "s#api_base: .*#api_base: http://127.0.0.1:$UP_PORT/v1#; s#model: openai/stub-model#model: openai/bench-model#" \
  "$PEERS/litellm/config.yaml" > "$WORK/litellm.yaml"
export LITELLM_MASTER_KEY=sk-bench-$(python3 -c 'import secrets;print(secrets.token_hex(16))')
log "LiteLLM $("$LITELLM_VENV/bin/pip" show litellm 2>/dev/null | sed -n 's/^Version: //p') proxy, ${LITELLM_WORKERS:-1} worker(s)"
( export LITELLM_LOCAL_MODEL_COST_MAP=True HOME=$WORK/litellm-home; mkdir -p "$HOME"
  exec "$LITELLM_VENV/bin/litellm" --config "$WORK/litellm.yaml" --host 127.0.0.1 --port "$LL_PORT" \
    --num_workers "${LITELLM_WORKERS:-1}" ) > "$WORK/litellm.log" 2>&1 &
PIDS+=($!)
wait_http "http://127.0.0.1:$LL_PORT/health/liveliness" 120
LL_URL=http://127.0.0.1:$LL_PORT/v1/chat/completions
code=$(curl -s -o "$WORK/ll.json" -w '%{http_code}' "$LL_URL" -H "Authorization: Bearer $LITELLM_MASTER_KEY" \
  -H 'Content-Type: application/json' --data-binary @"$WORK/body_litellm.json")
[ "$code" = 200 ] || { echo "LiteLLM answered $code: $(head -c 300 "$WORK/ll.json")" >&2; exit 1; }

echo
echo "-- LiteLLM proxy (no PHI handling at all), same upstream, same body"
run_rate litellm "$LL_URL" "$WORK/body_litellm.json" LITELLM_MASTER_KEY "$WORK/lat_litellm.json"
run_wrk litellm "$LL_URL" "$WORK/body_litellm.json" LITELLM_MASTER_KEY
# Added latency at a rate LiteLLM sustains too (it cannot keep up with 1,000 requests/s here).
LOW=${PEER_LOW_RATE:-50}
RATE=$LOW run_rate direct_low "$DIRECT_URL" "$WORK/body_direct.json" "" "$WORK/low_direct.json"
RATE=$LOW run_rate phigate_low "$GW_URL" "$WORK/body_phigate.json" PHIGATE_KEY "$WORK/low_phigate.json"
RATE=$LOW run_rate litellm_low "$LL_URL" "$WORK/body_litellm.json" LITELLM_MASTER_KEY "$WORK/low_litellm.json"
python3 - "$WORK" "$RATE" "$LOW" <<'EOF'
import json, sys
w, rate, low = sys.argv[1], sys.argv[2], sys.argv[3]
j = lambda n: json.load(open(f"{w}/{n}.json"))
f = lambda x: "n/a" if x is None else f"{x:.3f}"
d, g, l = j("lat_direct"), j("lat_phigate"), j("lat_litellm")
rg, rl = (float(open(f"{w}/rps_{n}").read()) for n in ("phigate", "litellm"))
s, c = l["service"], l["corrected"]
print(f"LiteLLM offered {rate} req/s: answered {l['completed_rps']:.0f} req/s; of the measured window's requests {l['ok']} "
      f"were answered and {l['unsent']} still queued when it closed; p50 {f(s['p50_ms'])} ms, p99 {f(s['p99_ms'])} ms")
print(f"ratio, max throughput phigate / LiteLLM: {rg / rl:.1f}x  ({rg:.0f} vs {rl:.0f} req/s)")
for name, (dd, gg, ll) in ((f"{rate} req/s", (d, g, l)), (f"{low} req/s", (j("low_direct"), j("low_phigate"), j("low_litellm")))):
    ag = [gg["service"][k] - dd["service"][k] for k in ("p50_ms", "p99_ms")]
    if ll["unsent"] or ll["service"]["p50_ms"] is None:
        print(f"added latency at {name}: phigate p50 {ag[0]:.3f} ms p99 {ag[1]:.3f} ms; LiteLLM could not sustain this rate")
        continue
    al = [ll["service"][k] - dd["service"][k] for k in ("p50_ms", "p99_ms")]
    print(f"added latency at {name}: phigate p50 {ag[0]:.3f} ms p99 {ag[1]:.3f} ms; LiteLLM p50 {al[0]:.3f} ms p99 {al[1]:.3f} ms; "
          f"ratio LiteLLM/phigate p50 {al[0] / max(ag[0], 1e-3):.1f}x p99 {al[1] / max(ag[1], 1e-3):.1f}x")
EOF
