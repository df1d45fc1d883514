#!/usr/bin/env bash
# Stage 1: SFT of Qwen3-4B-Base on the paper's blend (14,121,873 samples, data/blends/m2rl_sft.json), one node.
# The paper's SFT (scripts/run-qwen3-4B-base-sft.sh): AdamW lr 5e-5 -> 5e-6 cosine, 10% warm-up, weight decay 0.1,
# betas 0.9/0.95 (train_sft.py's defaults for a --model), 2 epochs, 512 samples a step, 18,432 tokens per GPU,
# full recompute, a checkpoint every 200 steps. Our steps count packed rows of --seq-len tokens, not samples: 64 rows
# of 18,432 tokens hold ~512 samples at ~2.3k tokens each — compare the plan's tokens a step (DRY_RUN=1).
: "${BASE:=/ckpt/Qwen3-4B-Base}"          # the HF base checkpoint
: "${BLEND:=data/blends/m2rl_sft.json}"   # reads $NEMOTRON_DATA
: "${RUNS:=runs/m2rl}"
source "$(dirname "$0")/launch.sh"

train train_sft.py --model "$BASE" --blend "$BLEND" --out "$RUNS/sft" \
    --epochs 2 --seq-len 18432 --batch-rows 64 --micro-rows 1 --activation-checkpointing --save-every 200
