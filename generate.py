"""Chat with a checkpoint through the native KV-cache generator: by default the embedded SFT model, data/tiny-sft.

    python generate.py --prompt "Tom has 37 apples and gets 5 more. How many apples does Tom have now?"
    python generate.py --model /path/to/Qwen3-0.6B --prompt "Prove that sqrt(2) is irrational." --no-thinking
"""
import argparse
import json
import time
from pathlib import Path

import torch

from cli import HelpFormatter, model_dir, non_negative_float, non_negative_int, positive_int, probability
from model import TINY_DIR, CheckpointError, SamplingParams, check_vocab, from_preset, generate, load_model
from tokenizer import Tokenizer

TINY_SFT = Path(__file__).resolve().parent / "data" / "tiny-sft"
parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
which = parser.add_mutually_exclusive_group()
which.add_argument("--model", type=model_dir, default=str(TINY_SFT),
                   help="Hugging Face Qwen3 directory (default: data/tiny-sft, the tiny preset SFT'd on the toy data)")
which.add_argument("--preset", help="random weights of this preset (e.g. tiny) instead of --model: the code path "
                                    "without a checkpoint, garbage text")
parser.add_argument("--prompt", default="What is 37+45?", help="the user turn")
parser.add_argument("--system", help="optional system message")
parser.add_argument("--no-thinking", action="store_true",
                    help="Qwen3 non-thinking mode (empty <think></think> block), as the trainers' and evaluate.py's")
parser.add_argument("--num-samples", type=positive_int, default=1, help="responses sampled, one batch")
# Qwen3's recommended thinking-mode sampling (its generation_config.json)
parser.add_argument("--max-new-tokens", type=positive_int, default=256, help="generation budget per response")
parser.add_argument("--temperature", type=non_negative_float, default=0.6, help="sampling temperature (0: greedy)")
parser.add_argument("--top-p", type=probability, default=0.95, help="nucleus sampling: the mass kept")
parser.add_argument("--top-k", type=non_negative_int, default=20, help="sample from the k likeliest (0: off)")
parser.add_argument("--seed", type=int, default=0, help="seeds the sampling (and a preset's random weights)")


def main(args):
    print(json.dumps(vars(args)))
    model = from_preset(args.preset, seed=args.seed) if args.preset else load_model(args.model)
    tokenizer = Tokenizer.from_dir(TINY_DIR if args.preset else args.model)
    check_vocab(model.config, tokenizer.vocab_size, f"--preset {args.preset}" if args.preset else args.model)
    print(f"chat format: {tokenizer.chat_format}")
    messages = ([{"role": "system", "content": args.system}] if args.system else []) + \
               [{"role": "user", "content": args.prompt}]
    prompt = tokenizer.encode_chat(messages, add_generation_prompt=True, enable_thinking=not args.no_thinking)
    sampling = SamplingParams(max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_p=args.top_p,
                              top_k=args.top_k, seed=args.seed,
                              stop_token_ids=[tokenizer.im_end_id, tokenizer.pad_id])  # Qwen3 stops at either

    t0 = time.perf_counter()
    outputs = generate(model.eval(), [prompt] * args.num_samples, sampling)
    seconds = time.perf_counter() - t0
    for i, out in enumerate(outputs):
        print(f"--- sample {i} ({len(out['token_ids'])} tokens, {out['finish_reason']}) ---")
        print(tokenizer.decode(out["token_ids"]))
    n_tokens = sum(len(o["token_ids"]) for o in outputs)
    print(f"--- {n_tokens} tokens in {seconds:.2f} s ({n_tokens / seconds:.0f} tokens/s, {torch.get_num_threads()} "
          f"threads)")


if __name__ == "__main__":
    try:
        main(parser.parse_args())
    except (CheckpointError, FileNotFoundError) as e:  # a bad --model: one line naming the file
        raise SystemExit(f"error: {e}") from None
