#!/usr/bin/env bash
# Stage 5: every model of the study on the paper's benchmarks, Avg@K, one table (evaluate.py; one GPU is enough,
# vLLM engine). Benchmark files come from local copies in BENCH_DIR (see benchmarks.py for each one's source).
# --protocol m2rl: the paper's evaluation (top-p 0.7, temperature 1, K 16 AIME24 / 4 GPQA / 1 IFBench, 4 elsewhere,
# 32,768-token responses, its reward rules).
: "${SFT:=runs/m2rl/sft/latest}"
: "${RUNS:=runs/m2rl}"
: "${BENCH_DIR:=/data/m2rl/bench}"
: "${BENCHMARKS:=aime24 aime25 lcb_v5 gpqa_diamond hle ifeval ifbench mmlu_redux}"  # a list: left unquoted below
source "$(dirname "$0")/launch.sh"

models=(sft="$SFT" mixed="$RUNS/grpo_mixed/latest" mtopd="$RUNS/mtopd/latest")
for d in math code science if; do models+=("$d=$RUNS/grpo_$d/latest"); done
for m in average task_arithmetic ties ties_dare ta_dare sce; do models+=("$m=$RUNS/merge_$m"); done

run evaluate.py --models "${models[@]}" --benchmarks $BENCHMARKS --data-dir "$BENCH_DIR" --engine vllm \
    --protocol m2rl --out "$RUNS/eval"
