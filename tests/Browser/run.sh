#!/usr/bin/env bash
# Browser stage: `influence serve` driven in a real headless Chromium (Debian's `chromium`, installed
# if missing; Playwright for .NET from NuGet, no browser download). Trains a small run on the embedded
# data with 10% flipped labels, detects them, starts the explorer on a free loopback port and runs
# tests/Browser/BrowserCheck: ranking, class filter, proponents of a click, a decision found in
# RUN/decisions.csv, a test point, an uploaded image, an oversized upload and path-traversal
# addresses (both refused). Screenshots of every step: $BROWSER_OUT (default ./out/browser).
#   BROWSER_DATA=fashion-mnist BROWSER_TRAIN_COUNT=60000 BROWSER_MEASURE=1 tests/Browser/run.sh
# measures the page load and the first proponents click on a 60,000-example run instead; with
# BROWSER_STORE=1 it measures twice on the same run, without a feature store (the one detect-mislabeled
# left is deleted) and then with one (build-store) of the explain method. The machine's load average is printed beside every figure.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
out=${BROWSER_OUT:-$repo/out/browser}
data=${BROWSER_DATA:-embedded}
count=${BROWSER_TRAIN_COUNT:-2000}
max_upload_kib=64
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
fail() { echo "browser stage: FAIL: $*" >&2; exit 1; }
t0=$SECONDS; last=$SECONDS
step() { echo "browser stage: $1 ($((SECONDS - last)) s)"; last=$SECONDS; }

if ! command -v chromium >/dev/null 2>&1; then
  [ "$(id -u)" = 0 ] || fail "Debian's chromium is missing and this user cannot install it (apt-get install chromium)"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/tmp/browser-apt.log 2>&1 \
    || { cat /tmp/browser-apt.log; fail "could not install chromium"; }
fi
export PLAYWRIGHT_CHROMIUM=${PLAYWRIGHT_CHROMIUM:-$(command -v chromium)}
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
rm -rf "$out"; mkdir -p "$out"
work=$(mktemp -d /tmp/influencesharp-browser.XXXXXX)
server=""
cleanup() { [ -n "$server" ] && kill "$server" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

dotnet build "$repo/src/InfluenceSharp.Cli" -c Release -nologo -v:q -o "$work/cli" >"$work/build-cli.log" 2>&1 || { cat "$work/build-cli.log"; fail "build the CLI"; }
dotnet build "$repo/tests/Browser/BrowserCheck" -c Release -nologo -v:q -o "$work/check" >"$work/build-check.log" 2>&1 || { cat "$work/build-check.log"; fail "build BrowserCheck"; }
step "built"
influence() { dotnet "$work/cli/influence.dll" "$@"; }
run="$work/run"
epochs=3; [ "$count" -gt 10000 ] && epochs=2
influence train --out "$run" --data "$data" --model mlp --train-count "$count" --epochs "$epochs" --corrupt 0.1 --threads 2 --quiet || fail "influence train"
step "trained mlp on $count examples of $data"
influence detect-mislabeled --run "$run" --methods tracin-last --threads 2 --quiet >"$out/detect.txt" || fail "influence detect-mislabeled"
step "detect-mislabeled"

phases=(plain); [ -n "${BROWSER_STORE:-}" ] && phases=(plain store)
for phase in "${phases[@]}"; do
# detect-mislabeled keeps tracin-last's features in RUN/store: without it for the first measurement.
[ "$phase" = plain ] && [ -n "${BROWSER_STORE:-}" ] && rm -rf "$run/store"
if [ "$phase" = store ]; then
  echo "browser stage: before build-store: $(uptime)"
  influence build-store --run "$run" --methods tracin-last --threads 2 --quiet || fail "influence build-store"
  step "build-store tracin-last"
fi
echo "browser stage: $phase: serve starting: $(uptime)"
# (dotnet itself in the background, not the shell function, so that $! is the server's own PID)
dotnet "$work/cli/influence.dll" serve --run "$run" --port 0 --max-upload "$max_upload_kib" --threads 2 >"$work/serve.out" 2>"$out/serve.err" &
server=$!
url=""
for _ in $(seq 1 600); do
  url=$(grep -o 'http://127\.0\.0\.1:[0-9]*/' "$work/serve.out" || true)
  [ -n "$url" ] && break
  kill -0 "$server" 2>/dev/null || { cat "$out/serve.err"; fail "influence serve exited"; }
  sleep 0.5
done
[ -n "$url" ] || { cat "$out/serve.err"; fail "influence serve printed no address"; }
step "serve listening at $url ($phase; $(cut -d' ' -f1-3 /proc/loadavg))"

phase_out=$out; [ "$phase" = store ] && phase_out=$out/store
args=(--url "$url" --run "$run" --out "$phase_out" --max-upload $((max_upload_kib * 1024)))
[ -n "${BROWSER_MEASURE:-}" ] && args+=(--measure)
dotnet "$work/check/BrowserCheck.dll" "${args[@]}" || { cat "$out/serve.err"; fail "the browser check (screenshots in $out)"; }
[ -z "${BROWSER_MEASURE:-}" ] && cp "$run/decisions.csv" "$out/decisions.csv"
kill "$server"; wait "$server" 2>/dev/null || true; server=""
step "browser check ($phase)"
done
echo "browser stage: passed in $((SECONDS - t0)) s; screenshots in $out"
