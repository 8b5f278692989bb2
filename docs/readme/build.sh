#!/usr/bin/env bash
# Assembles README.md from the section files in this folder (each part owned next to its code's docs).
set -euo pipefail
cd "$(dirname "$0")"
parts=(head.md foundation.md engine.md quant.md eval.md sandbox.md train.md grpo.md recipe.md serve.md layout.md)
{
  for p in "${parts[@]}"; do
    [ -f "$p" ] || continue
    cat "$p"
    echo
  done
} > ../../README.md
echo "README.md assembled from: $(for p in "${parts[@]}"; do [ -f "$p" ] && printf '%s ' "$p"; done)"
