#!/usr/bin/env bash
# Notebook stage: every notebook under examples/ executed headlessly, cell by cell, by the dotnet-repl
# tool (0.3.259, installed into a temporary tool path) on the .NET Interactive C# kernel, against
# InfluenceSharp, InfluenceSharp.Reporting and InfluenceSharp.Notebooks packed from this clone into a
# local feed (a unique version, so the NuGet cache never serves a stale build). Fails on any cell
# error, and when a notebook shows no inline image (InfluenceSharp.Notebooks' displays). The executed notebooks (with outputs) are written to
# $NOTEBOOKS_OUT (default ./out/notebooks), never over the committed ones.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
out=${NOTEBOOKS_OUT:-$repo/out/notebooks}
work=$(mktemp -d /tmp/influencesharp-notebooks.XXXXXX)
version="0.1.0-nb.$(date +%Y%m%d%H%M%S).$$"
packages=${NUGET_PACKAGES:-$HOME/.nuget/packages}
cleanup() {
  rm -rf "$work"
  for id in influencesharp influencesharp.reporting influencesharp.notebooks; do rm -rf "$packages/$id/$version"; done
}
trap cleanup EXIT
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1
fail() { echo "notebook stage: FAIL: $*" >&2; exit 1; }
t0=$SECONDS; last=$SECONDS
step() { echo "notebook stage: $1 ($((SECONDS - last)) s)"; last=$SECONDS; }
rm -rf "$out"; mkdir -p "$out"

dotnet tool install dotnet-repl --version 0.3.259 --tool-path "$work/tools" >"$work/tool.log" 2>&1 || { cat "$work/tool.log"; fail "dotnet tool install dotnet-repl"; }
feed="$work/feed"
for p in InfluenceSharp InfluenceSharp.Reporting InfluenceSharp.Notebooks; do
  dotnet pack "$repo/src/$p" -c Release -o "$feed" -p:Version="$version" -nologo -v:q >"$work/pack-$p.log" 2>&1 || { cat "$work/pack-$p.log"; fail "dotnet pack $p"; }
done
# The listing is captured first: with pipefail, grep -q stopping early would SIGPIPE unzip and fail the stage.
listing=$(unzip -l "$feed/InfluenceSharp.Notebooks.$version.nupkg")
grep -q 'interactive-extensions/dotnet/InfluenceSharp.Notebooks.dll' <<<"$listing" \
  || fail "the InfluenceSharp.Notebooks package lacks its kernel extension (interactive-extensions/dotnet)"
step "dotnet-repl installed, packages $version packed"

shopt -s nullglob
notebooks=("$repo"/examples/*.ipynb)
[ ${#notebooks[@]} -gt 0 ] || fail "no notebook under examples/"
for nb in "${notebooks[@]}"; do
  name=$(basename "$nb" .ipynb)
  mkdir -p "$work/run/$name"
  # The committed notebook loads the packages from ../packages at version 0.1.0: point it at this feed.
  sed -e "s|nuget: ../packages|nuget: $feed|" -e "s|InfluenceSharp.Notebooks, 0.1.0|InfluenceSharp.Notebooks, $version|" "$nb" >"$work/run/$name/$name.ipynb"
  grep -q "$version" "$work/run/$name/$name.ipynb" || fail "$nb: no '#r \"nuget: InfluenceSharp.Notebooks, 0.1.0\"' line to point at the local feed"
  set +e
  (cd "$work/run/$name" && timeout 1500 "$work/tools/dotnet-repl" --run "$name.ipynb" --exit-after-run --output-path "$out/$name.ipynb" >"$out/$name.log" 2>&1)
  code=$?
  set -e
  [ -f "$out/$name.ipynb" ] || { tail -50 "$out/$name.log"; fail "$name: dotnet-repl wrote no output notebook (exit $code)"; }
  # Every code cell ran and none failed; the rich displays are there.
  /usr/bin/python3 - "$out/$name.ipynb" <<'PY' || { tail -20 "$out/$name.log"; fail "$name: a cell failed (above; executed notebook: $out/$name.ipynb)"; }
import json, sys
nb = json.load(open(sys.argv[1]))
bad = 0
code = [c for c in nb["cells"] if c["cell_type"] == "code"]
html = ""
for i, c in enumerate(code, 1):
    outs = c.get("outputs", [])
    for o in outs:
        if o.get("output_type") == "error":
            bad += 1
            print(f"cell {i}: {o.get('ename')}: {o.get('evalue', '')[:2000]}")
        html += "".join(o.get("data", {}).get("text/html", []))
if bad == 0 and "data:image/png;base64" not in html:
    bad += 1; print("no inline image in the outputs")
print(f"{len(code)} code cells, {bad} problems")
sys.exit(1 if bad else 0)
PY
  [ "$code" = 0 ] || { tail -20 "$out/$name.log"; fail "$name: dotnet-repl exited $code"; }
  step "$name ran"
done
echo "notebook stage: passed in $((SECONDS - t0)) s; executed notebooks in $out"
