"""Chat with a checkpoint (or the tiny preset) through the native KV-cache generator.

    python generate.py --preset tiny --prompt "What is 37+45?"
    python generate.py --model /path/to/Qwen3-0.6B --prompt "Prove that sqrt(2) is irrational." --no-think
"""
import argparse
import time

import torch

from cli import model_dir, non_negative_float, non_negative_int, positive_int, probability
from model import TINY_DIR, CheckpointError, SamplingParams, check_vocab, from_preset, generate, load_model
from tokenizer import Tokenizer

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--model", type=model_dir, help="Hugging Face Qwen3 directory (default: the tiny preset)")
parser.add_argument("--preset", default="tiny", help="random-weight preset used when --model is not given")
parser.add_argument("--prompt", default="What is 37+45?")
parser.add_argument("--system", help="optional system message")
parser.add_argument("--no-think", action="store_true", help="Qwen3 non-thinking mode (empty <think></think> block)")
parser.add_argument("--num-samples", type=positive_int, default=1)
# Qwen3's recommended thinking-mode sampling (its generation_config.json)
parser.add_argument("--max-new-tokens", type=positive_int, default=256)
parser.add_argument("--temperature", type=non_negative_float, default=0.6)
parser.add_argument("--top-p", type=probability, default=0.95)
parser.add_argument("--top-k", type=non_negative_int, default=20)
parser.add_argument("--seed", type=int, default=0)


def main(args):
    print(vars(args))
    model = load_model(args.model) if args.model else from_preset(args.preset, seed=args.seed)
    tokenizer = Tokenizer.from_dir(args.model or TINY_DIR)
    check_vocab(model.config, tokenizer.vocab_size, args.model or f"--preset {args.preset}")
    messages = ([{"role": "system", "content": args.system}] if args.system else []) + \
               [{"role": "user", "content": args.prompt}]
    prompt = tokenizer.encode_chat(messages, add_generation_prompt=True, enable_thinking=not args.no_think)
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
