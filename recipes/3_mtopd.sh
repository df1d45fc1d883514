#!/usr/bin/env bash
# Stage 3: multi-teacher on-policy distillation from the SFT model, each domain's prompts distilled from its
# expert (stage 2). The paper's MT-OPD: 256 prompts x 4 samples a step, lr 1e-6, responses <= 16,384 tokens
# (train_grpo.py's --teachers defaults give 4 samples and lr 1e-6; with --protocol m2rl also clip 0.2/0.2 and no TIS,
# scripts/multi_teacher_opd.sh).
: "${SFT:=runs/m2rl/sft/latest}"
: "${RL_DATA:=/data/m2rl/rl}"
: "${RUNS:=runs/m2rl}"
: "${STEPS:=200}"
source "$(dirname "$0")/launch.sh"

train train_grpo.py --model "$SFT" --out "$RUNS/mtopd" --engine vllm --steps "$STEPS" \
    --data "$RL_DATA"/{math,code,science,if}.jsonl --domains math,code,science,if \
    --teachers "math=$RUNS/grpo_math/latest" "code=$RUNS/grpo_code/latest" "science=$RUNS/grpo_science/latest" \
    "if=$RUNS/grpo_if/latest" \
    --prompts-per-step 256 --max-prompt-len 2048 --max-response-len 16384 --protocol m2rl \
    --max-tokens-per-micro-batch 17600 --activation-checkpointing
