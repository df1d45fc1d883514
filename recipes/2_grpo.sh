#!/usr/bin/env bash
# Stage 2: GRPO from the SFT model, one run per domain (the experts) and one on the mixture, one node each.
# The paper's GRPO (scripts/run-qwen3-4B-*.sh): 128 prompts x 16 samples a step, prompts <= 2,048
# and responses <= 32,768 tokens, temperature 1, 200 steps per domain and 400 mixed, scored by the paper's rules
# (--protocol m2rl: think gate, deepscaler math, gpqa science, exact code comparison - rewards/); the loss terms
# are train_grpo.py's defaults for a --model, the paper's: lr 2e-6 constant, betas 0.9/0.98, weight decay 0.1, clip 0.2/0.28, KL 0, TIS cap 2.
# Micro-batches pack 17,600 tokens (slime's --max-tokens-per-gpu) with full recompute, balanced over ranks; a
# checkpoint every 20 steps (--save-interval 20).
#   recipes/2_grpo.sh math        one expert (math | code | science | if)
#   recipes/2_grpo.sh mixed       the mixed run on all four
: "${SFT:=runs/m2rl/sft/latest}"
: "${RL_DATA:=/data/m2rl/rl}"             # math.jsonl code.jsonl science.jsonl if.jsonl (python -m data.convert --protocol m2rl)
: "${RUNS:=runs/m2rl}"
source "$(dirname "$0")/launch.sh"

domain="${1:?usage: recipes/2_grpo.sh math|code|science|if|mixed}"
if [[ "$domain" == mixed ]]; then
    domains=math,code,science,if steps=400
else
    domains="$domain" steps=200
fi
data=()
for d in ${domains//,/ }; do data+=("$RL_DATA/$d.jsonl"); done

train train_grpo.py --model "$SFT" --data "${data[@]}" --domains "$domains" --out "$RUNS/grpo_$domain" \
    --engine vllm --steps "$steps" --prompts-per-step 128 --group-size 16 \
    --max-prompt-len 2048 --max-response-len 32768 --protocol m2rl \
    --max-tokens-per-micro-batch 17600 --activation-checkpointing --save-every 20
