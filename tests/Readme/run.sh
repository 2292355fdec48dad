#!/usr/bin/env bash
# README stage: every ```bash block of README.md, in order, as a new user runs them: in a fresh copy
# of this repository (its tracked and not-ignored files) in a temporary directory, with HOME pointed
# into that directory (so `dotnet tool install -g` installs the tool built from this repository there,
# not into the CI user's tools). The blocks run in one shell, each starting in the copy's root, so an
# `export PATH=...` of one block holds for the next. Any failing command fails the stage.
#
# Markers in the README itself, visible next to what they change:
#   `# readme-check: skip (REASON)` at the end of a command line: that command is not run (REASON
#       says why, e.g. it is another CI stage);
#   a line `# readme-check: replace A => B ; C => D` in a block: the block runs with the literal
#       text A replaced by B (shorter settings), as the README says there.
# Runtime: measured 54 minutes on a 2-core machine at load average 30-50 (demo block: Release build and
# run, 36 min; packing and installing the tool 3.5 min; packing the library and building a console app
# against it 3 min; the shortened curation example 12 min); on an idle 2-core machine expect about a
# quarter of that (the demo alone is about 40 s there).
# Leaves nothing behind (the packages of the README's version are removed from the NuGet cache again).
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d /tmp/influencesharp-readme.XXXXXX)
clone="$work/clone"
version=$(sed -n 's:.*<Version>\(.*\)</Version>.*:\1:p' "$repo/Directory.Build.props" | head -1)
export NUGET_PACKAGES=${NUGET_PACKAGES:-$HOME/.nuget/packages}   # reuse what the build restored
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1
drop_packed() {
  # A package packed from the README has the repository's version: NuGet would serve this build to a
  # later run of the stage from its cache, so it never stays there.
  for id in influencesharp influencesharp.reporting influencesharp.cli influencesharp.cli.linux-x64; do
    rm -rf "${NUGET_PACKAGES:?}/$id/$version"
  done
}
cleanup() { rm -rf "$work"; drop_packed; }
trap cleanup EXIT
drop_packed
fail() { echo "readme stage: FAIL: $*" >&2; exit 1; }

mkdir -p "$clone" "$work/home"
git -C "$repo" ls-files -z --cached --others --exclude-standard \
  | tar -C "$repo" --null --ignore-failed-read -T - -cf - | tar -C "$clone" -xf -

# The blocks, with the markers applied, into one script.
script="$work/readme.sh"
python3 - "$repo/README.md" "$script" "$clone" <<'PY'
import re, shlex, sys
readme, out, clone = sys.argv[1:4]
text = open(readme, encoding="utf-8").read()
blocks = re.findall(r"^```bash\n(.*?)^```", text, flags=re.S | re.M)
if not blocks:
    sys.exit("README.md has no ```bash blocks")
lines = ["set -euo pipefail"]
for n, block in enumerate(blocks, 1):
    body = block.splitlines()
    pairs = []
    for l in body:
        m = re.match(r"\s*# readme-check: replace (.*)$", l)
        if m:
            for part in m.group(1).split(" ; "):
                a, b = part.split(" => ")
                pairs.append((a.strip(), b.strip()))
    run = []
    for l in body:
        if re.match(r"\s*# readme-check: replace ", l):
            continue
        for a, b in pairs:
            if a in l:
                l = l.replace(a, b)
        m = re.match(r"(.*?)#\s*readme-check: skip\s*(.*)$", l)
        if m:
            l = "echo " + shlex.quote(f"readme stage: skipped `{m.group(1).strip()}` {m.group(2).strip()}")
        run.append(l)
    for a, b in pairs:
        if not any(b in l for l in run):
            sys.exit(f"block {n}: the readme-check replacement '{a}' matches nothing")
    first = next((l for l in body if l.strip() and not l.lstrip().startswith("#")), "").strip()
    lines.append(f"cd {shlex.quote(clone)}")
    lines.append("echo " + shlex.quote(f"readme stage: block {n}: {first}"))
    lines.append("SECONDS_BLOCK=$SECONDS")
    lines.extend(run)
    lines.append(f'echo "readme stage: block {n} done ($((SECONDS - SECONDS_BLOCK)) s)"')
open(out, "w", encoding="utf-8").write("\n".join(lines) + "\n")
PY
echo "readme stage: $(grep -c '^echo .readme stage: block [0-9]*:' "$script") bash blocks from README.md"
SECONDS=0
HOME="$work/home" bash "$script" || fail "a README command failed (above)"
echo "readme stage: all README commands ran ($SECONDS s)"
