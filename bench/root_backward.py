"""How much memory the backward of the model's root takes above its start, against memory.plan_bytes' transient term.

    .venv/bin/python bench/root_backward.py          # Qwen3-0.6B's root (vocab 151,936 x hidden 1,024), a minute

The root is where the vocabulary lives: in backward, lm_head's gradient (from linear_logprobs), the embedding's and
their sum are each a whole (vocab x hidden) tensor before FSDP reduces them, a transient that no per-token count sees.
One block of the 0.6B shape, 1,024 tokens, fp32 on CPU, plain and under FSDP2 (one rank, gloo); a thread samples this
process's anonymous resident memory every few milliseconds.
"""
import argparse
import sys
import threading
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import memory  # noqa: E402
from model import PRESETS, Qwen3Config, Qwen3ForCausalLM  # noqa: E402

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--tokens", type=int, default=1024, help="tokens in the forward/backward")
parser.add_argument("--fsdp", action="store_true", help="shard the block and the root with FSDP2 (one rank, gloo)")


def anonymous_gib() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("RssAnon:")) / 2**20


def main(args):
    config = Qwen3Config(**{**PRESETS["0.6B"], "num_hidden_layers": 1})
    model = Qwen3ForCausalLM(config)
    model.init_weights(seed=0)
    if args.fsdp:
        from torch.distributed.fsdp import fully_shard

        import dist
        dist.init()  # a world of one on a free local port
        fully_shard(model.model.layers[0])
        fully_shard(model)
    peak = [0.0]

    def sample():
        while True:
            peak[0] = max(peak[0], anonymous_gib())
            time.sleep(0.002)

    threading.Thread(target=sample, daemon=True).start()
    ids = torch.randint(0, config.vocab_size, (1, args.tokens))
    logprobs, _ = model.token_logprobs(ids, ids, torch.arange(args.tokens)[None])
    time.sleep(0.05)
    start = peak[0] = anonymous_gib()
    logprobs.sum().backward()
    time.sleep(0.05)
    one = 4 * config.vocab_size * config.hidden_size / 2**30
    term = next(v for k, v in memory.plan_bytes(config, 1, args.tokens, dtype=torch.float32, path="cpu").items()
                if k.startswith("transient")) / 2**30
    print(f"{'FSDP2' if args.fsdp else 'plain'} backward of the 0.6B root + 1 block, {args.tokens} tokens: peak "
          f"{peak[0] - start:.2f} GiB above its start ({(peak[0] - start) / one:.1f} fp32 vocab x hidden tensors of "
          f"{one:.2f} GiB); memory.plan_bytes' transient term: {term:.2f} GiB")


if __name__ == "__main__":
    main(parser.parse_args())
