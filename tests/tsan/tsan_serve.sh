#!/usr/bin/env bash
# tests/tsan/tsan_serve.sh BITJIT MODEL -- `bitjit serve` under concurrent load, for the
# ThreadSanitizer build (ctest -L tsan; it runs in every build). Starts the server on a free
# port with 2 slots, sends one greedy completion, then 6 clients x 5 of the same request in
# parallel (each answer must equal the first), drops a streaming client mid-answer, checks the
# server still answers, and stops it with SIGTERM (exit 0) while a stream is running (the drain).
# Meanwhile /metrics and /health are scraped and streams with logprobs run; every request is
# logged (--log-format json). Fails on any ThreadSanitizer report
# in the server's output. HTTP is spoken through bash's /dev/tcp: no client needs installing.
set -u
BJ=$1 MODEL=$2
LOG=$(mktemp)
fail() { echo "tsan_serve: $*" >&2; echo "--- server output:" >&2; cat "$LOG" >&2; kill -9 "$pid" 2>/dev/null; rm -f "$LOG"; exit 1; }
"$BJ" serve -m "$MODEL" --port 0 --parallel 2 -t 2 --log-format json 2>"$LOG" &
pid=$!
port=""
for _ in $(seq 1 1200); do
  port=$(sed -n 's/.*listening on http:\/\/.*:\([0-9][0-9]*\) (model.*/\1/p' "$LOG")
  [ -n "$port" ] && break
  kill -0 "$pid" 2>/dev/null || fail "the server exited before listening"
  sleep 0.1
done
[ -n "$port" ] || fail "the server did not start listening in 120 s"

req() { # req PATH BODY: the whole HTTP response on stdout
  exec 3<>"/dev/tcp/127.0.0.1/$port" || return 1
  printf 'POST %s HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s' \
    "$1" "${#2}" "$2" >&3
  cat <&3
  exec 3<&-
}
get() { # get PATH: the whole HTTP response on stdout
  exec 3<>"/dev/tcp/127.0.0.1/$port" || return 1
  printf 'GET %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n' "$1" >&3
  cat <&3
  exec 3<&-
}
text_of() { grep -o '"text": *"[^"]*"' | head -1; }

body='{"prompt": "In the beginning", "max_tokens": 8, "temperature": 0}'
want=$(req /v1/completions "$body" | text_of)
[ -n "$want" ] || fail "no text in the first completion"
bad=$(mktemp)
for c in 1 2 3 4 5 6; do
  ( for r in 1 2 3 4 5; do
      got=$(req /v1/completions "$body" | text_of)
      [ "$got" = "$want" ] || echo "client $c request $r: got '$got', want '$want'" >>"$bad"
    done ) &
done
( for r in 1 2 3 4 5; do
    get /metrics | grep -q '^bitjit_generated_tokens_total ' || echo "scrape $r: no bitjit_generated_tokens_total" >>"$bad"
    get /health | grep -q '"status":"ok"' || echo "health $r: not ok" >>"$bad"
  done ) &
( lbody='{"prompt": "In the beginning", "max_tokens": 8, "temperature": 0, "stream": true, "logprobs": 2}'
  for r in 1 2 3; do
    req /v1/completions "$lbody" | grep -q 'data: \[DONE\]' || echo "logprobs stream $r: no [DONE]" >>"$bad"
  done ) &
wait $(jobs -p | grep -v "^$pid$") 2>/dev/null
[ -s "$bad" ] && { cat "$bad" >&2; rm -f "$bad"; fail "wrong answers under load"; }
rm -f "$bad"

# A streaming client that reads a little and hangs up.
sbody='{"prompt": "In the beginning", "max_tokens": 64, "temperature": 0, "stream": true}'
exec 4<>"/dev/tcp/127.0.0.1/$port"
printf 'POST /v1/completions HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s' \
  "${#sbody}" "$sbody" >&4
head -c 200 <&4 >/dev/null
exec 4<&-
got=$(req /v1/completions "$body" | text_of)
[ "$got" = "$want" ] || fail "after a dropped stream: got '$got', want '$want'"

# SIGTERM while a stream runs: it drains (the stream ends with [DONE]), then exits 0.
dbody='{"prompt": "In the beginning", "max_tokens": 200, "temperature": 0, "stream": true}'
dout=$(mktemp)
req /v1/completions "$dbody" >"$dout" &
dpid=$!
for _ in $(seq 1 200); do grep -q 'data: {' "$dout" && break; sleep 0.05; done
kill -TERM "$pid"
wait "$dpid"
wait "$pid"
rc=$?
grep -q 'data: \[DONE\]' "$dout" || { rm -f "$dout"; fail "the stream running at SIGTERM did not end with [DONE]"; }
rm -f "$dout"
[ "$rc" -eq 0 ] || fail "the server exited $rc on SIGTERM"
grep -q "ThreadSanitizer" "$LOG" && fail "ThreadSanitizer reported"
rm -f "$LOG"
echo "tsan_serve: ok (31 completions, 6 clients, one dropped stream)"
