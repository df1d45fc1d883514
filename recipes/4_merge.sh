#!/usr/bin/env bash
# Stage 4: the six merges of the four experts into one model, with the SFT model as the base (merge.py's defaults
# are the paper's MergeLM settings: scale 1.0, TIES density 0.2, DARE drop 0.2, SCE top-k 1.0). CPU is enough.
: "${SFT:=runs/m2rl/sft/latest}"
: "${RUNS:=runs/m2rl}"
source "$(dirname "$0")/launch.sh"

for method in average task_arithmetic ties ties_dare ta_dare sce; do
    run merge.py --base "$SFT" --method "$method" --out "$RUNS/merge_$method" \
        --models math="$RUNS/grpo_math/latest" code="$RUNS/grpo_code/latest" \
                 science="$RUNS/grpo_science/latest" if="$RUNS/grpo_if/latest"
done
