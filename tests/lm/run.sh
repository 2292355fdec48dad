#!/usr/bin/env bash
# Language-model stage: fact tracing on the planted-fact corpus (tests/lm/FactTracing.cs). A tiny
# GPT (byte tokens, width 32, 2 blocks) is trained through the Trainer on 24 fact documents and 24
# others; EK-FAC with the completion's log-probability as the measurement must put each fact's source
# document in its top 10 for at least 80 % of the facts, averaged over four corpus seeds. Prints
# K-FAC, identity and BM25 beside it.
# Runtime: about 2 minutes on a loaded 2-core machine (four corpus seeds; build of the script included).
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo"
dotnet run tests/lm/FactTracing.cs
