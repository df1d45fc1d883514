"""Per-rank memory of a training step, by arithmetic: what a trainer's --dry-run prints before it allocates anything.

    parameter_count(config)                                   the model's parameters, from the shapes in model.py
    saved_bytes_per_token(config, dtype, checkpointing)       activation bytes autograd keeps per token (forward ->
                                                              backward), counted op by op from model.py and kernels/
    plan_bytes(config, world, tokens_per_rank, ...)           {what: bytes} on one rank under FSDP2 over `world`
    batch_bytes(tokens, response_tokens, packed, pi_old)      a GRPO step's grpo.Batch, on the device all the step

The counts follow the code, not a rule of thumb: tests/test_memory.py measures the saved tensors of a forward with
torch.autograd.graph.saved_tensors_hooks at the Qwen3-4B layer shape and compares, and the tensors of a batch that
grpo.build_batch built.
"""
import torch

FP32 = 4
INT64 = 8


def parameter_count(config) -> int:
    H, I, hd = config.hidden_size, config.intermediate_size, config.head_dim
    q, kv = config.num_attention_heads * hd, config.num_key_value_heads * hd
    attention = (H * q + 2 * H * kv + q * H + (2 * hd if config.qk_norm else 0)  # q/k norms: Qwen3's, not Qwen2's
                 + (q + 2 * kv if config.qkv_bias else 0) + (H if config.attention_bias else 0))  # o_proj's bias
    block = attention + 3 * H * I + 2 * H  # + MLP, 2 RMSNorms
    head = 0 if config.tie_word_embeddings else config.vocab_size * H
    return config.vocab_size * H + config.num_hidden_layers * block + H + head


def saved_bytes_per_token(config, dtype: torch.dtype, checkpointing: bool, path: str = "cuda") -> int:
    """Bytes autograd keeps per token between a forward of the whole model (through token_logprobs) and its backward,
    in compute dtype `dtype`; parameters are not counted. With checkpointing (model.recompute_activations) each block
    keeps only its input, and the backward holds one block's worth again while it recomputes it.

    path "cuda" is the training path on GPUs: the Triton kernels (kernels/) and flash-attn's varlen kernel. "cpu" is
    kernels/eager.py with SDPA, which also keeps an additive (T x T) mask per layer (dtype bytes x row length per
    token), not counted here. Neither path keeps (tokens x vocab) logits: linear_logprobs recomputes them blockwise.
    """
    e = torch.finfo(dtype).bits // 8
    H, I, hd = config.hidden_size, config.intermediate_size, config.head_dim
    n_q, n_kv = config.num_attention_heads, config.num_key_value_heads
    q, kv = n_q * hd, n_kv * hd
    if path == "cuda":
        # kernels/rmsnorm.py keeps its input and a fp32 rstd per row; the next linear keeps the norm's output
        norm = e * H + FP32 + e * H
        # q: q_proj's output (q_norm's input), its rstd per head, the rotated q, flash-attn's output; k: the same but
        # the output; v as projected. flash-attn keeps q, k, v, out and a fp32 softmax_lse per head (its
        # FlashAttnVarlenFunc.save_for_backward); kernels/rope.py keeps only cos/sin, shared by all layers
        attention = 3 * e * q + 2 * FP32 * n_q + 2 * e * kv + FP32 * n_kv + e * kv
        mlp = 3 * e * I  # kernels/silu_mul.py keeps gate and up; down_proj keeps their product
    elif path == "cpu":
        # kernels/eager.py rms_norm keeps the fp32 copy of its input (x itself when x is fp32), the fp32 rstd, the
        # normalised x in x's dtype (for the weight's gradient) and its output (kept by the next linear)
        norm = FP32 * H + FP32 + 2 * e * H
        # q_norm/k_norm as above per head; rope keeps only cos/sin; SDPA keeps q, k, v, its output and a fp32
        # logsumexp per head
        attention = (FP32 * q + FP32 * n_q + e * q) + e * q + e * q + FP32 * n_q + \
                    (FP32 * kv + FP32 * n_kv + e * kv) + e * kv + e * kv
        mlp = 4 * e * I  # silu keeps gate, the product keeps silu(gate) and up, down_proj keeps the product
    else:
        raise ValueError(f"path {path!r}: choose 'cuda' (Triton + flash-attn) or 'cpu' (eager + SDPA)")
    block = 2 * norm + attention + mlp
    # outside the blocks: the input ids (int64, kept by the embedding), fp32 cos and sin, the final norm; then
    # linear_logprobs keeps the hidden states (the final norm's output, counted there), the int64 targets and a fp32
    # logsumexp per token
    outside = 8 + 2 * FP32 * hd + norm + 8 + FP32
    if checkpointing:
        return config.num_hidden_layers * e * H + block + outside
    return config.num_hidden_layers * block + outside


def plan_bytes(config, world: int, tokens_per_rank: int = 0, checkpointing: bool = False,
               dtype: torch.dtype = torch.bfloat16, path: str = "cuda") -> dict[str, int]:
    """{what: bytes} held on one rank of `world` during a training step, as the trainers run it: fp32 master weights,
    their fp32 gradients and AdamW's two fp32 moments sharded by FSDP2; `dtype` copies of the parameters gathered
    around the block that runs (the root's embedding and final norm for the whole forward, the current block and the
    one prefetched); activations for `tokens_per_rank` tokens in one forward/backward (the CUDA path); and the larger
    of two transients that never overlap: the root's backward, where three (vocab x hidden) tensors in `dtype` can be
    live at once (lm_head's gradient from linear_logprobs, the embedding's, and their sum or FSDP's reduce-scatter
    input; measured with bench/root_backward.py at the Qwen3-0.6B root on this CPU: 1.38 GiB above the backward's start,
    2.4 such fp32 tensors), and the largest tensor the weight sync gathers whole (full_tensors streams one
    fp32 tensor at a time). Not counted: the logits blocks of linear_logprobs (2**24 elements each), matmul and NCCL
    buffers, and the allocator's slack."""
    e = torch.finfo(dtype).bits // 8
    params = parameter_count(config)
    H = config.hidden_size
    root = config.vocab_size * H * (1 if config.tie_word_embeddings else 2) + H
    block = (params - root) // config.num_hidden_layers
    sharded = -(-params // world)  # FSDP2 pads each parameter's dim 0 to a multiple of world; a few rows at most
    return {
        "parameters (fp32, sharded)": FP32 * sharded,
        "gradients (fp32, sharded)": FP32 * sharded,
        "adamw moments (fp32, sharded)": 2 * FP32 * sharded,
        f"gathered parameters ({dtype}, root + 2 blocks)".replace("torch.", ""): e * (root + 2 * block),
        "activations": tokens_per_rank * saved_bytes_per_token(config, dtype, checkpointing, path),
        "transient, the larger: root gradients in backward or the weight sync's largest tensor":
            max(3 * e * config.vocab_size * H, FP32 * config.vocab_size * H),
    }


def batch_bytes(tokens: int, response_tokens: int, packed: bool, pi_old: bool) -> int:
    """Bytes of a GRPO step's grpo.Batch on one rank: built once before the first forward of the step and kept to its
    end, beside everything plan_bytes counts. `tokens` are its token-row positions (prompt + response, padding
    included) and `response_tokens` the positions of its (B, R) per-response-token tensors (R: the longest response
    in each micro-batch). Per micro-batch (grpo.MicroBatch, logprobs.Tokens): the rows' ids and targets, int64, and
    with packing their position ids; per response position the int64 index into the rows and the fp32 mask,
    advantage, engine logprob, and pi_old's logprob where the step scores it (off policy - several mini-batches or
    PPO epochs - and MT-OPD, whose teacher term then replaces the advantages: no tensor more)."""
    per_row_position = INT64 * (3 if packed else 2)
    per_response_position = INT64 + FP32 * (4 if pi_old else 3)
    return tokens * per_row_position + response_tokens * per_response_position


def resident_bytes() -> int:
    """This process's resident memory now (VmRSS): what the libraries it imported hold before any model exists."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))


def report(terms: dict[str, int], title: str) -> str:
    """The terms and their sum, one per line in GiB: the arithmetic as it is."""
    width = max(map(len, terms))
    lines = [f"{title}:"] + [f"  {name:<{width}}  {b / 2**30:8.2f} GiB" for name, b in terms.items()]
    return "\n".join(lines + [f"  {'estimate: total':<{width}}  {sum(terms.values()) / 2**30:8.2f} GiB"])
