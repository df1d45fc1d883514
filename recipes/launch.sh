# Sourced by every recipe: how a stage starts. On a node, `torchrun` over its GPUs; with DRY_RUN=1, one plain
# process per stage that plans for NGPU ranks (WORLD_SIZE), validates every flag and input, prints the plan and
# writes nothing (the scripts' --dry-run; the trainers plan for GPUs).
: "${NGPU:=8}"
: "${PYTHON:=python}"
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [[ -n "${DRY_RUN:-}" ]]; then
    train() { WORLD_SIZE="$NGPU" "$PYTHON" "$@" --dry-run cuda; }
    run() { "$PYTHON" "$@" --dry-run; }
else
    train() { torchrun --nproc_per_node "$NGPU" "$@"; }
    run() { "$PYTHON" "$@"; }
fi
