#!/usr/bin/env bash
# Package stage: InfluenceSharp as a user outside this repository gets it.
#  1. packs the library, the reporting library and the tool into a local folder feed;
#  2. builds a fresh console project in a temporary directory (outside the repo, so none of the
#     repo's Directory.Build.* applies) that references InfluenceSharp by PackageReference plus the
#     one backend line, with the README's library example as its Program.cs, and runs it small;
#  3. installs the tool from the feed into a tool path and runs `influence --version`, a tiny
#     `train` and `detect-mislabeled`.
# Prints package sizes, installed size and the time of each step. Leaves nothing behind.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d /tmp/influencesharp-package.XXXXXX)
version="0.1.0-ci.$(date +%Y%m%d%H%M%S).$$"   # unique: the NuGet cache never serves a stale build
packages=${NUGET_PACKAGES:-$HOME/.nuget/packages}
cleanup() {
  rm -rf "$work"
  for id in influencesharp influencesharp.reporting influencesharp.cli influencesharp.cli.linux-x64; do
    rm -rf "$packages/$id/$version"
  done
}
trap cleanup EXIT
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1
fail() { echo "package stage: FAIL: $*" >&2; exit 1; }
t0=$SECONDS; last=$SECONDS
step() { echo "package stage: $1 ($((SECONDS - last)) s)"; last=$SECONDS; }

feed="$work/feed"
for p in InfluenceSharp InfluenceSharp.Reporting InfluenceSharp.Cli; do
  [ -d "$repo/src/$p" ] || continue
  dotnet pack "$repo/src/$p" -c Release -o "$feed" -p:Version="$version" -nologo -v:q >"$work/pack-$p.log" 2>&1 \
    || { cat "$work/pack-$p.log"; fail "dotnet pack $p"; }
done
step "packed $version"
ls -l "$feed" | awk 'NR>1 { printf "  %-60s %8.1f MB\n", $9, $5/1e6 }'
tool_pkg="$feed/InfluenceSharp.Cli.linux-x64.$version.nupkg"
[ -f "$tool_pkg" ] || fail "no linux-x64 tool package"
size=$(stat -c %s "$tool_pkg")
[ "$size" -lt 250000000 ] || fail "tool package is $size bytes, over the gallery's 250 MB"
tool_listing=$(unzip -l "$tool_pkg")
if grep -E 'libtorch_python|_test\.so|osx|win-x64|\.dylib|\.dll$' <<<"$tool_listing" | grep -vE '/(influence|InfluenceSharp[.A-Za-z]*|TorchSharp|TorchSharp\.PyBridge|Razorvine\.Pickle|TqdmSharp|SkiaSharp|Google\.Protobuf|ICSharpCode\.SharpZipLib|System\.[A-Za-z.]+|Microsoft\.[A-Za-z0-9.]+|StbImageSharp)\.dll$'; then
  fail "the tool package carries files another runtime or Python needs (listed above)"
fi
# (Listings are captured first: `grep -q` in a pipeline would stop reading early and, under
# pipefail, fail the pipeline with unzip's SIGPIPE.)
nuspec=$(unzip -p "$feed/InfluenceSharp.$version.nupkg" InfluenceSharp.nuspec)
listing=$(unzip -l "$feed/InfluenceSharp.$version.nupkg")
grep -q '<dependency id="TorchSharp"' <<<"$nuspec" || fail "library must depend on TorchSharp"
grep -q '<dependency id="TorchSharp-cpu"' <<<"$nuspec" && fail "library must not pick the backend"
grep -q 'buildTransitive/InfluenceSharp.targets' <<<"$listing" || fail "library package lacks its buildTransitive targets"
grep -q 'lib/net10.0/InfluenceSharp.xml' <<<"$listing" || fail "library package lacks its XML documentation"
grep -q '<dependency id="InfluenceSharp.Reporting"' <<<"$nuspec" && fail "the core library must not depend on InfluenceSharp.Reporting"

# --- 2. a consumer project ------------------------------------------------------------------
app="$work/consumer"; mkdir -p "$app"
cat >"$app/nuget.config" <<XML
<?xml version="1.0" encoding="utf-8"?>
<configuration>
  <packageSources>
    <add key="influencesharp-local" value="$feed" />
  </packageSources>
</configuration>
XML
cat >"$app/Consumer.csproj" <<XML
<Project Sdk="Microsoft.NET.Sdk">
  <PropertyGroup>
    <OutputType>Exe</OutputType>
    <TargetFramework>net10.0</TargetFramework>
    <Nullable>enable</Nullable>
    <ImplicitUsings>enable</ImplicitUsings>
    <NoWarn>\$(NoWarn);NU1603</NoWarn>
  </PropertyGroup>
  <ItemGroup>
    <PackageReference Include="InfluenceSharp" Version="$version" />
    <PackageReference Include="TorchSharp-cpu" Version="0.107.0" />
  </ItemGroup>
</Project>
XML
# The README's library example, verbatim: the code between the markers.
awk '/<!-- library-example:start -->/ { on = 1; next } /<!-- library-example:end -->/ { on = 0 } on' "$repo/README.md" \
  | sed -e '/^```/d' >"$app/Program.cs"
[ -s "$app/Program.cs" ] || fail "README.md has no library example between <!-- library-example:start/end --> markers"
(cd "$app" && dotnet build -c Release -nologo >"$work/consumer-build.log" 2>&1) || { cat "$work/consumer-build.log"; fail "consumer build"; }
if ! grep -q 'GLIBCXX_3.4.32' /usr/lib/x86_64-linux-gnu/libstdc++.so.6 2>/dev/null; then
  grep -q 'marked GLIBCXX_3.4.32 weak' "$work/consumer-build.log" \
    || { cat "$work/consumer-build.log"; fail "this libstdc++ lacks GLIBCXX_3.4.32 and the consumer's build did not patch libLibTorchSharp.so"; }
fi
step "consumer project built from the packages"
(cd "$app" && dotnet run -c Release --no-build -- 1 600 >"$work/consumer.out" 2>"$work/consumer.err") \
  || { cat "$work/consumer.out" "$work/consumer.err"; fail "the README's library example crashed in the consumer"; }
cat "$work/consumer.out"
# The example prints its IProgress updates as "[progress] ..." lines on stderr; anything else there
# would be the library writing to the console, which it must never do.
if grep -v '^\[progress\] ' "$work/consumer.err"; then fail "the library wrote to the console (lines above)"; fi
grep -q '^\[progress\] epoch 1/1' "$work/consumer.err" || { cat "$work/consumer.err"; fail "no progress update from the Trainer reached the application"; }
grep -qE '^EK-FAC self-influence: 600 examples' "$work/consumer.out" || fail "library example output: no EK-FAC line"
auc=$(sed -nE 's/^EK-FAC self-influence: .*ROC AUC ([0-9.]+)$/\1/p' "$work/consumer.out")
awk -v a="$auc" 'BEGIN { exit !(a > 0.6) }' || fail "EK-FAC's ROC AUC for the flipped labels is '$auc' (expected > 0.6: far better than chance)"
grep -qE '^TracIn self-influence: 600 examples' "$work/consumer.out" || fail "library example output: no TracIn line"
grep -qE '^query 0: proponents' "$work/consumer.out" || fail "library example output: no proponents"
step "README library example ran in the consumer"

# --- 3. the tool ----------------------------------------------------------------------------
tools="$work/tools"
dotnet tool install InfluenceSharp.Cli --version "$version" --tool-path "$tools" --add-source "$feed" >"$work/tool-install.log" 2>&1 \
  || { cat "$work/tool-install.log"; fail "dotnet tool install"; }
step "tool installed"
echo "  installed size: $(du -sh --exclude='*.nupkg' "$tools" | cut -f1) (plus the cached .nupkg: $(du -sh "$tools" | cut -f1) in all)"
v=$("$tools/influence" --version)
[ "$v" = "$version" ] || [ "${v%%+*}" = "$version" ] || fail "influence --version printed '$v', expected $version"
run="$work/tool-run"
(cd "$work" && "$tools/influence" train --out "$run" --data embedded --model mlp --epochs 1 --train-count 500 --corrupt 0.1 --quiet) \
  || fail "influence train"
[ -f "$run/run.json" ] || fail "train wrote no run.json"
(cd "$work" && "$tools/influence" detect-mislabeled --run "$run" --methods identity,tracin-last --quiet >"$work/detect.out") \
  || fail "influence detect-mislabeled"
cat "$work/detect.out"
for f in self_influence-identity.npy self_influence-tracin-last.npy detection.json detection-curve.png; do
  [ -s "$run/detect/$f" ] || fail "detect-mislabeled wrote no $f"
done
# Factors and pairwise scores, then the README's Python snippet on them (Debian's numpy).
(cd "$work" && "$tools/influence" fit-factors --run "$run" --out "$work/factors" --strategy ekfac --quiet) || fail "influence fit-factors"
(cd "$work" && "$tools/influence" scores pairwise --run "$run" --factors "$work/factors" --out "$work/scores" --query-count 4 --quiet) \
  || fail "influence scores pairwise"
awk '/<!-- python-example:start -->/ { on = 1; next } /<!-- python-example:end -->/ { on = 0 } on' "$repo/README.md" \
  | sed -e '/^```/d' >"$work/read_scores.py"
[ -s "$work/read_scores.py" ] || fail "README.md has no Python example between <!-- python-example:start/end --> markers"
/usr/bin/python3 "$work/read_scores.py" "$work/scores" >"$work/python.out" || fail "the README's Python snippet failed on the tool's output"
cat "$work/python.out"
[ "$(grep -c 'proponents' "$work/python.out")" = 4 ] || fail "the Python snippet did not list 4 queries"
# The same queries scored in blocks of 3 (two passes over the training set): the same scores.
(cd "$work" && "$tools/influence" scores pairwise --run "$run" --factors "$work/factors" --out "$work/scores-blocks" --query-count 4 --query-block 3 \
  2>"$work/blocks.err" >/dev/null) || { cat "$work/blocks.err"; fail "influence scores pairwise --query-block 3"; }
grep -q "scoring 4 queries in 2 blocks of 3" "$work/blocks.err" || fail "scores pairwise --query-block 3 did not say it split the queries"
/usr/bin/python3 -c '
import sys, numpy as np
a, b = np.load(sys.argv[1]), np.load(sys.argv[2])
assert a.shape == b.shape == (4, 500) and np.abs(a).max() > 0, (a.shape, b.shape)
err = np.abs(a - b).max() / np.abs(a).max()
assert err <= 1e-5, err
print(f"  query blocks of 3: scores equal one pass to {err:.1e} of the largest")
' "$work/scores/scores.npy" "$work/scores-blocks/scores.npy" || fail "scores in query blocks differ from one pass"
"$tools/influence" train -h >/dev/null || fail "influence train -h"
set +e; "$tools/influence" train --epochs two >/dev/null 2>"$work/usage.err"; code=$?; set -e
[ "$code" = 2 ] || fail "a usage error exited $code, expected 2"
step "tool ran train and detect-mislabeled"
echo "package stage: passed in $((SECONDS - t0)) s"
