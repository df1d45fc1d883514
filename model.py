"""Qwen3 (dense) in plain PyTorch: config, modules, Hugging Face checkpoints, KV cache, native generation.
Qwen2 / Qwen2.5 run through the same code, switched by the config (model_type "qwen2": q/k/v biases, no q/k norm).

Read top to bottom, in the order a batch meets the code:
  Qwen3Config (read from an HF config.json, or a named preset)
  RMSNorm -> RoPE -> Attention (SDPA, or flash-attn varlen for packed training on CUDA) -> MLP -> Block -> Qwen3ForCausalLM
  checkpoint I/O (streamed shard by shard; HF layout so transformers and vLLM load our output unchanged)
  KVCache, prefill/decode, sampling, generate()

Module and parameter names equal the HF ones (`model.layers.0.self_attn.q_proj.weight`, ...), so a state dict
needs no renaming in either direction. Nothing here is distributed: FSDP2 wraps this model from the outside.
"""
import functools
import json
import math
import os
import shutil
import uuid
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from files import remove_stale_temps, temp_path
from kernels import apply_rope, linear_logprobs, rms_norm, swiglu

try:  # flash-attn is optional: it serves packed training on CUDA; SDPA gives the same result everywhere else
    from flash_attn import flash_attn_varlen_func
except ImportError:
    flash_attn_varlen_func = None

TINY_DIR = Path(__file__).resolve().parent / "data" / "tiny"  # the tiny preset's tokenizer lives here


# -----------------------------------------------------------------------------
# Config


class CheckpointError(ValueError):
    """A checkpoint or output directory that cannot be used as given. The message names the file (and key), so a
    script can print it as its one line: merge.py, reading N models, must say which one is bad."""


@dataclass
class Qwen3Config:
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int  # explicit in Qwen3 (e.g. 128 with hidden 1024 and 16 heads), never hidden_size // heads
    rms_norm_eps: float = 1e-6
    rope_theta: float = 1_000_000.0
    max_position_embeddings: int = 40960
    tie_word_embeddings: bool = False
    attention_bias: bool = False
    bos_token_id: int | None = None
    eos_token_id: int | list[int] | None = None
    initializer_range: float = 0.02
    dtype: str = "float32"
    # "qwen2" (Qwen2, Qwen2.5): Qwen3 without the per-head q/k RMSNorm, with biases on q/k/v always (and o_proj
    # never), head_dim = hidden_size // heads; the two transformers classes differ in nothing else we run
    model_type: str = "qwen3"

    @property
    def qk_norm(self) -> bool:
        return self.model_type == "qwen3"

    @property
    def qkv_bias(self) -> bool:
        return self.attention_bias or self.model_type == "qwen2"

    @classmethod
    def from_hf(cls, hf: dict, source: str = "config.json") -> "Qwen3Config":
        if not isinstance(hf, dict):
            raise CheckpointError(f"{source}: expected a JSON object, got {type(hf).__name__}")
        if hf.get("model_type") not in ("qwen3", "qwen2"):
            raise CheckpointError(f"{source}: model_type is {hf.get('model_type')!r}; model.py implements only 'qwen3' "
                                  f"(dense) and 'qwen2'")
        if hf.get("use_sliding_window"):
            raise CheckpointError(f"{source}: use_sliding_window=true is not supported (no released Qwen3 dense model "
                                  f"uses it)")
        # transformers >= 5 writes rope_parameters = {"rope_type", "rope_theta"}; older files carry rope_theta (+ rope_scaling)
        rope = hf.get("rope_parameters") or hf.get("rope_scaling") or {}
        if rope.get("rope_type", rope.get("type", "default")) != "default":
            raise CheckpointError(f"{source}: rope type {rope.get('rope_type', rope.get('type'))!r} is not supported, "
                                  f"only 'default'")
        theta = rope.get("rope_theta", hf.get("rope_theta", cls.rope_theta))
        known = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in hf.items() if k in known}
        kwargs["rope_theta"] = float(theta)
        kwargs.setdefault("head_dim", 128)  # transformers' Qwen3Config default, so we read what it reads
        kwargs.setdefault("num_key_value_heads", hf.get("num_attention_heads"))
        kwargs["dtype"] = str(hf.get("dtype") or hf.get("torch_dtype") or "float32")
        missing = [f.name for f in fields(cls) if f.name not in kwargs and f.default is MISSING]
        if missing:
            raise CheckpointError(f"{source}: missing key(s) {missing}")
        sizes = [f.name for f in fields(cls) if f.default is MISSING]  # the shapes: a wrong one fails later, unnamed
        bad = [f"{k} = {kwargs[k]!r}" for k in sizes if type(kwargs[k]) is not int or kwargs[k] <= 0]
        if bad:
            raise CheckpointError(f"{source}: {', '.join(bad)}; expected a positive integer")
        if hf["model_type"] == "qwen2":
            kwargs.pop("attention_bias", None)  # not a Qwen2 key: its q/k/v always have biases and o_proj none
            kwargs["head_dim"] = kwargs["hidden_size"] // kwargs["num_attention_heads"]
            if hf.get("head_dim", kwargs["head_dim"]) != kwargs["head_dim"]:  # vLLM's Qwen2 ignores the key
                raise CheckpointError(f"{source}: head_dim = {hf['head_dim']!r}, but Qwen2 has hidden_size // "
                                      f"num_attention_heads = {kwargs['head_dim']} (vLLM derives it)")
        return cls(**kwargs)

    @classmethod
    def from_dir(cls, path) -> "Qwen3Config":
        file = Path(path) / "config.json"
        if not file.exists():
            raise CheckpointError(f"{file}: no config.json — is {path} a Hugging Face model directory?")
        return cls.from_hf(read_json(file), str(file))

    def to_hf(self) -> dict:
        qwen2_drops = ("head_dim", "attention_bias") if self.model_type == "qwen2" else ()  # derived, or not a key
        hf = {k: v for k, v in vars(self).items() if k not in ("rope_theta", *qwen2_drops)}
        hf.update(
            architectures=[{"qwen3": "Qwen3ForCausalLM", "qwen2": "Qwen2ForCausalLM"}[self.model_type]],
            hidden_act="silu",
            rope_parameters={"rope_type": "default", "rope_theta": self.rope_theta},
            rope_theta=self.rope_theta,  # read by older transformers/vLLM config code
            use_sliding_window=False, attention_dropout=0.0, use_cache=True,
        )
        return hf


# Named presets (STYLE: presets as data, not branches). "tiny" is the embedded default: a few million parameters that
# train and generate on a laptop CPU in seconds (sizes measured in docs/toy-notes.md); its tokenizer is data/tiny/.
PRESETS = {
    "tiny": dict(vocab_size=512, hidden_size=256, intermediate_size=768, num_hidden_layers=4, num_attention_heads=4,
                 num_key_value_heads=2, head_dim=64, rope_theta=10_000.0, max_position_embeddings=2048,
                 tie_word_embeddings=True, bos_token_id=507, eos_token_id=509),  # <|endoftext|>, <|im_end|> of data/tiny
    # Qwen3-0.6B / Qwen3-4B shapes (their config.json), for random-weight benchmarks; real runs load the checkpoint
    "0.6B": dict(vocab_size=151936, hidden_size=1024, intermediate_size=3072, num_hidden_layers=28,
                 num_attention_heads=16, num_key_value_heads=8, head_dim=128, tie_word_embeddings=True,
                 bos_token_id=151643, eos_token_id=151645),
    "4B": dict(vocab_size=151936, hidden_size=2560, intermediate_size=9728, num_hidden_layers=36,
               num_attention_heads=32, num_key_value_heads=8, head_dim=128, tie_word_embeddings=True,
               bos_token_id=151643, eos_token_id=151645),
}


# -----------------------------------------------------------------------------
# Modules


class RMSNorm(nn.Module):
    """Qwen3 RMSNorm: normalise in fp32, cast back, then scale (the order matters for bf16 parity with HF)."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        return rms_norm(x, self.weight, self.eps)


def rope_cos_sin(position_ids, head_dim: int, theta: float):
    """fp32 cos/sin for non-interleaved RoPE (halves rotated, as HF's rotate_half), one row per token position."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float, device=position_ids.device) / head_dim))
    freqs = position_ids[..., None].float() * inv_freq  # (B, T, head_dim/2)
    emb = torch.cat((freqs, freqs), dim=-1)  # (B, T, head_dim)
    return emb.cos(), emb.sin()


class Attention(nn.Module):
    def __init__(self, cfg: Qwen3Config):
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
        self.q_proj = nn.Linear(cfg.hidden_size, self.n_heads * self.head_dim, bias=cfg.qkv_bias)
        self.k_proj = nn.Linear(cfg.hidden_size, self.n_kv_heads * self.head_dim, bias=cfg.qkv_bias)
        self.v_proj = nn.Linear(cfg.hidden_size, self.n_kv_heads * self.head_dim, bias=cfg.qkv_bias)
        self.o_proj = nn.Linear(self.n_heads * self.head_dim, cfg.hidden_size, bias=cfg.attention_bias)
        # Qwen3's change over Qwen2: RMSNorm over each head's q and k before RoPE (stabilises attention logits).
        # Qwen2 has none: Identity holds no parameter, so the state dict has exactly Qwen2's tensors.
        self.q_norm = RMSNorm(self.head_dim, cfg.rms_norm_eps) if cfg.qk_norm else nn.Identity()
        self.k_norm = RMSNorm(self.head_dim, cfg.rms_norm_eps) if cfg.qk_norm else nn.Identity()

    def forward(self, x, cos, sin, mask, cache=None, cache_pos=None, cu_seqlens=None):
        B, T, _ = x.shape
        q = self.q_norm(self.q_proj(x).view(B, T, self.n_heads, self.head_dim))  # (B, T, n_heads, head_dim)
        k = self.k_norm(self.k_proj(x).view(B, T, self.n_kv_heads, self.head_dim))  # (B, T, n_kv, head_dim)
        v = self.v_proj(x).view(B, T, self.n_kv_heads, self.head_dim)  # (B, T, n_kv, head_dim)
        q, k = apply_rope(q, k, cos, sin)
        if cu_seqlens is not None:  # packed training on CUDA: documents laid end to end, no padding, no mask
            y = flash_attn_varlen(q, k, v, cu_seqlens)
        else:
            q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # (B, heads, T, head_dim)
            if cache is not None:
                k, v = cache.update(cache_pos, k, v)  # (B, n_kv, cache_pos+T, head_dim): the columns so far
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=self.n_kv_heads != self.n_heads)
            y = y.transpose(1, 2)  # (B, T, n_heads, head_dim)
        return self.o_proj(y.reshape(B, T, self.n_heads * self.head_dim))


def use_flash_attn(x) -> bool:
    """flash-attn's varlen kernel for packed training where it runs (CUDA, package installed, hidden states `x` in
    bf16/fp16: its kernels take no other dtype, and our checkpoints are fp32); SDPA otherwise."""
    return flash_attn_varlen_func is not None and x.device.type == "cuda" and x.dtype in (torch.bfloat16, torch.float16)


def flash_attn_varlen(q, k, v, cu_seqlens):
    """q (1, N, n_heads, hd), k/v (1, N, n_kv, hd) with documents delimited by cu_seqlens -> (1, N, n_heads, hd)."""
    max_len = int((cu_seqlens[1:] - cu_seqlens[:-1]).max())
    y = flash_attn_varlen_func(q[0], k[0], v[0], cu_seqlens, cu_seqlens, max_len, max_len, causal=True)
    return y.unsqueeze(0)


class MLP(nn.Module):
    def __init__(self, cfg: Qwen3Config):
        super().__init__()
        self.gate_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.up_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.down_proj = nn.Linear(cfg.intermediate_size, cfg.hidden_size, bias=False)

    def forward(self, x):
        return self.down_proj(swiglu(self.gate_proj(x), self.up_proj(x)))


class Block(nn.Module):
    def __init__(self, cfg: Qwen3Config):
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.self_attn = Attention(cfg)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.mlp = MLP(cfg)

    def forward(self, x, cos, sin, mask, cache=None, cache_pos=None, cu_seqlens=None):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask, cache, cache_pos, cu_seqlens)
        return x + self.mlp(self.post_attention_layernorm(x))


class Qwen3Model(nn.Module):
    def __init__(self, cfg: Qwen3Config):
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg.num_hidden_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)


class Qwen3ForCausalLM(nn.Module):
    def __init__(self, cfg: Qwen3Config):
        super().__init__()
        self.config = cfg
        self.model = Qwen3Model(cfg)
        self.lm_head = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)
        if cfg.tie_word_embeddings:  # Qwen3 <= 4B share the input embedding and the output head
            self.lm_head.weight = self.model.embed_tokens.weight

    def forward(self, input_ids, position_ids=None, caches=None, cache_pos=None, rope=None):
        """Final hidden states (B, T, hidden), after the last norm.

        Training (caches=None): rows may hold several documents packed end to end, marked by position_ids restarting at
        0; attention never crosses a document boundary. Without position_ids each row is one document.
        Generation (caches given): input_ids fill cache columns cache_pos .. cache_pos+T-1 (cache_pos an int),
        position_ids are per row (left padding makes them differ), and the caches' `valid` masks hide padding.
        rope: (cos, sin) tables (max_position, head_dim) of rope_cos_sin, looked up by position; None computes them.
        """
        B, T = input_ids.shape
        if position_ids is None:
            position_ids = torch.arange(T, device=input_ids.device).expand(B, T)
        if rope is None:
            cos, sin = rope_cos_sin(position_ids, self.config.head_dim, self.config.rope_theta)
        else:  # rope_cos_sin of every position, made once per generate call
            cos, sin = rope[0][position_ids], rope[1][position_ids]
        x = self.model.embed_tokens(input_ids)  # (B, T, hidden) in the compute dtype, which picks the attention kernel
        mask, cu_seqlens = None, None
        if caches is not None:
            mask = caches[0].attention_mask(cache_pos, T)
        elif use_flash_attn(x):
            cu_seqlens = packed_cu_seqlens(position_ids)
        else:
            mask = document_causal_mask(position_ids)
        if cu_seqlens is not None:
            x, cos, sin = x.view(1, B * T, -1), cos.view(1, B * T, -1), sin.view(1, B * T, -1)
        for i, layer in enumerate(self.model.layers):
            x = layer(x, cos, sin, mask, caches[i] if caches else None, cache_pos, cu_seqlens)
        return self.model.norm(x.view(B, T, -1))  # (B, T, hidden); the packed path ran as one row of B*T

    def logits(self, hidden):
        return self.lm_head(hidden).float()

    def token_logprobs(self, input_ids, targets, position_ids=None, temperature=1.0, with_entropy=False, at=None):
        """log p(targets | prefix) per token, (B, T) fp32, through the chunked kernel: the (tokens x vocab) logits are
        never materialised whole. Targets equal to -100 are ignored (logprob 0, no gradient). `at`, indices into the
        flattened (B * T) positions: the head runs at those only (as TRL's logits_to_keep), `targets` and the result
        then have at's shape."""
        hidden = self(input_ids, position_ids).flatten(0, 1)
        logprobs, entropy = linear_logprobs(hidden if at is None else hidden[at.flatten()], self.lm_head.weight,
                                            targets.flatten(), temperature=temperature, with_entropy=with_entropy)
        shape = targets.shape
        return logprobs.view(shape), (entropy.view(shape) if entropy is not None else None)

    def init_weights(self, seed: int = 0, local_rows=None):
        """Random init as HF's Qwen3PreTrainedModel: N(0, initializer_range) for linears/embedding, ones for norms.
        `local_rows` as in fill_weights: a sharded model draws each full tensor in turn, the same numbers on any
        number of ranks, and keeps its rows."""
        gen = torch.Generator().manual_seed(seed)
        for name, p in self.named_parameters():
            part, first = local_rows(p) if local_rows else (p, 0)
            with torch.no_grad():
                if name.endswith("norm.weight"):
                    part.fill_(1.0)
                elif name.endswith(".bias"):
                    part.zero_()
                else:
                    full = torch.randn(p.shape, generator=gen) * self.config.initializer_range
                    part.copy_(full[first:first + len(part)])


def recompute_activations(model: Qwen3ForCausalLM):
    """Activation recompute (gradient checkpointing) per decoder block: only each block's input is kept for the
    backward pass, which reruns the block's forward — about a third more compute for activations that no longer
    grow with depth. Applied before FSDP2's fully_shard, as torchtitan does, so the recompute runs inside the
    block's unsharded window."""
    for block in model.model.layers:
        block.forward = _checkpointed(block.forward)
    return model


def _checkpointed(forward):
    def run(*inputs):
        return torch.utils.checkpoint.checkpoint(forward, *inputs, use_reentrant=False)
    return run


def document_causal_mask(position_ids):
    """(B, 1, T, T) bool: token i may attend token j iff j <= i and both lie in the same document (a new document
    starts wherever position_ids is 0) — packed rows behave exactly like separate sequences."""
    doc = torch.cumsum(position_ids == 0, dim=1)  # (B, T) document index within the row
    T = position_ids.shape[1]
    causal = torch.ones(T, T, dtype=torch.bool, device=position_ids.device).tril()
    return (causal & (doc[:, :, None] == doc[:, None, :]))[:, None]


def packed_cu_seqlens(position_ids):
    """Cumulative document lengths over the flattened batch, as flash-attn's varlen kernels take them (int32)."""
    starts = torch.nonzero(position_ids.flatten() == 0).flatten()
    total = torch.tensor([position_ids.numel()], device=position_ids.device)
    return torch.cat([starts, total]).to(torch.int32)


# -----------------------------------------------------------------------------
# Checkpoints: Hugging Face directories (config.json + safetensors, sharded with an index or single)

WEIGHTS_NAME, INDEX_NAME = "model.safetensors", "model.safetensors.index.json"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json", "merges.txt",
                   "added_tokens.json", "chat_template.jinja")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def read_json(file: Path):
    try:
        return json.loads(file.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{file}: not valid JSON ({e})") from None


class CheckpointReader:
    """Reads one tensor at a time from an HF directory (single file or shards + index): nothing is loaded until asked."""

    def __init__(self, path):
        self.path = Path(path)
        self.config = Qwen3Config.from_dir(self.path)
        index = self.path / INDEX_NAME
        if index.exists():
            weight_map = read_json(index)
            if not isinstance(weight_map, dict) or not isinstance(weight_map.get("weight_map"), dict):
                raise CheckpointError(f"{index}: no 'weight_map' object (tensor name -> shard file)")
            self.file_of = {k: self.path / f for k, f in weight_map["weight_map"].items()}
        elif (self.path / WEIGHTS_NAME).exists():
            with self.open(self.path / WEIGHTS_NAME) as f:
                self.file_of = {k: self.path / WEIGHTS_NAME for k in f.keys()}
        else:
            raise CheckpointError(f"{self.path}: neither {WEIGHTS_NAME} nor {INDEX_NAME} found")
        for file in set(self.file_of.values()):
            if not file.exists():
                raise CheckpointError(f"{file}: weight file named in {index} is missing")

    def names(self) -> list[str]:
        return list(self.file_of)

    @staticmethod
    def open(file: Path, device="cpu"):
        """safe_open, naming the file when it is not a safetensors file (garbage, or cut short by a full disk)."""
        try:
            return safe_open(file, "pt", device=str(device))
        except (SafetensorError, OSError) as e:
            raise CheckpointError(f"{file}: not a readable safetensors file ({e})") from None

    def get(self, name: str, device="cpu", rows: slice = slice(None)) -> torch.Tensor:
        """The tensor, or only `rows` of its dim 0: safetensors then reads just those bytes."""
        with self.open(self._file(name), device) as f:
            return f.get_slice(name)[rows]

    def shape(self, name: str) -> tuple[int, ...]:
        with self.open(self._file(name)) as f:
            return tuple(f.get_slice(name).get_shape())

    def _file(self, name: str) -> Path:
        if name not in self.file_of:
            raise CheckpointError(f"{self.path}: tensor {name!r} not found in the checkpoint")
        return self.file_of[name]


def load_model(path, device="cpu", dtype=None) -> Qwen3ForCausalLM:
    """Build the model on the meta device, materialise it once on `device`, then copy the checkpoint in tensor by
    tensor — the weights never exist twice. dtype defaults to the checkpoint's."""
    reader = CheckpointReader(path)
    cfg = reader.config
    dtype = dtype or DTYPES.get(cfg.dtype, torch.float32)
    with torch.device("meta"):
        model = Qwen3ForCausalLM(cfg)
    model.to_empty(device=device)
    if cfg.tie_word_embeddings:  # to_empty re-allocates parameters one by one: restore the tie
        model.lm_head.weight = model.model.embed_tokens.weight
    model.to(dtype)
    fill_weights(model, reader)
    return model


def fill_weights(model: Qwen3ForCausalLM, reader: CheckpointReader, local_rows=None):
    """Copy the checkpoint into the model's parameters one tensor at a time, checking names and shapes against the
    config. `local_rows(param) -> (part, first row)` names the part of each parameter this process holds, rows
    [first, first + len(part)) of dim 0 of the full tensor, and only those rows are read (a trainer's FSDP shard:
    dist.load_sharded); default: the whole parameter."""
    tied = reader.config.tie_word_embeddings
    params = dict(model.named_parameters())  # a tied head appears once, as model.embed_tokens.weight
    for name in reader.names():
        if name == "lm_head.weight" and tied:
            continue  # some exporters store the tied head too; it is the embedding by definition
        if name not in params:
            raise CheckpointError(f"{reader.file_of[name]}: unexpected tensor {name!r} (not a "
                                  f"{reader.config.model_type} dense parameter)")
        if reader.shape(name) != tuple(params[name].shape):
            raise CheckpointError(f"{reader.file_of[name]}: tensor {name!r} has shape {reader.shape(name)}, "
                             f"config.json implies {tuple(params[name].shape)}")
        part, first = local_rows(params[name]) if local_rows else (params[name], 0)
        with torch.no_grad():
            part.copy_(reader.get(name, rows=slice(first, first + len(part))))  # read on the CPU, copied over
    missing = sorted(set(params) - set(reader.names()))
    if missing:
        raise CheckpointError(f"{reader.path}: checkpoint lacks tensor(s) {missing[:5]}"
                              f"{' ...' if len(missing) > 5 else ''}")


def preset_config(name: str) -> Qwen3Config:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {list(PRESETS)}")
    return Qwen3Config(**PRESETS[name])


def check_vocab(config: Qwen3Config, tokenizer_vocab_size: int, where):
    """Refuse a model and tokenizer that do not fit, where the two meet (evaluate.py, generate.py, the trainers): a
    token id past the embedding's rows would otherwise surface as an IndexError deep in the forward pass, naming
    nothing, and only once such a token comes up. More rows than tokens is normal (Qwen3 pads 151,669 to 151,936)."""
    if config.vocab_size < tokenizer_vocab_size:
        raise CheckpointError(f"{where}: the model's vocab_size is {config.vocab_size} but its tokenizer has "
                              f"{tokenizer_vocab_size} tokens (ids past the embedding): pair the model with the "
                              f"tokenizer it was trained with")


def from_preset(name: str, seed: int = 0, dtype=torch.float32) -> Qwen3ForCausalLM:
    model = Qwen3ForCausalLM(preset_config(name))
    model.init_weights(seed)
    return model.to(dtype)


def save_checkpoint(out_dir, named_tensors, config: Qwen3Config, source_dir=None, max_shard_bytes=2 * 2**30,
                    extra_files=None, dtype=None):
    """Write an HF directory that transformers and vLLM load unchanged, streaming: `named_tensors` is an iterable of
    (hf_name, tensor) consumed one at a time (a model's state dict, an FSDP full-tensor stream, a merge), and a shard
    is flushed as soon as it fills. Tokenizer files and generation_config.json are copied from `source_dir` when given;
    `extra_files`, called once every tensor is written, returns {file name: text} to put beside them (a merge's
    report, complete only then). `dtype`: the weights' dtype in the files (default: each tensor's own). Atomic:
    everything is written to a temporary directory that is renamed onto out_dir at the end, replacing it whole: a
    script checks first, with check_out_dir, that out_dir is its own earlier output. A failed save removes its
    temporary directory; a killed one leaves it to the next save beside it (remove_stale_temps)."""
    out_dir = Path(out_dir).absolute()  # `--out .` has no name to put a temporary beside
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / "config.json").is_file():
        raise CheckpointError(f"{out_dir} is not a checkpoint (no config.json): save_checkpoint replaces only those")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(out_dir.parent)
    tmp = temp_path(out_dir, uuid.uuid4().hex[:8])
    tmp.mkdir()  # mode from the umask, as every file in it (mkdtemp would make it 0700: unreadable by others)
    try:
        _write_hf(tmp, named_tensors, config, source_dir, max_shard_bytes, extra_files, dtype)
        _replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _write_hf(tmp: Path, named_tensors, config: Qwen3Config, source_dir, max_shard_bytes, extra_files, dtype):
    shard, shard_bytes, shards, weight_map, saved_dtype = {}, 0, [], {}, None
    for name, tensor in named_tensors:
        if name == "lm_head.weight" and config.tie_word_embeddings:
            continue  # tied: transformers writes only the embedding, and so do we
        tensor = tensor.detach().to("cpu", dtype or tensor.dtype).contiguous()
        saved_dtype = saved_dtype or tensor.dtype
        nbytes = tensor.numel() * tensor.element_size()
        if shard and shard_bytes + nbytes > max_shard_bytes:
            shards.append(_write_shard(tmp, len(shards), shard))
            shard, shard_bytes = {}, 0
        shard[name], shard_bytes = tensor, shard_bytes + nbytes
        weight_map[name] = len(shards)
    shards.append(_write_shard(tmp, len(shards), shard))
    total_size = sum(f.stat().st_size for f in shards)
    if len(shards) == 1:
        shards[0].rename(tmp / WEIGHTS_NAME)
    else:  # names carry the shard count, known only now: model-00001-of-00003.safetensors
        names = [f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))]
        for f, n in zip(shards, names):
            f.rename(tmp / n)
        index = {"metadata": {"total_size": total_size}, "weight_map": {k: names[i] for k, i in weight_map.items()}}
        (tmp / INDEX_NAME).write_text(json.dumps(index, indent=2))
    hf = config.to_hf()
    hf["dtype"] = str(saved_dtype).removeprefix("torch.")
    (tmp / "config.json").write_text(json.dumps(hf, indent=2))
    source = Path(source_dir) if source_dir else None
    if source and (source / "generation_config.json").exists():
        shutil.copyfile(source / "generation_config.json", tmp / "generation_config.json")
    else:  # Qwen3's published thinking-mode sampling defaults
        gen = {"bos_token_id": config.bos_token_id, "eos_token_id": config.eos_token_id, "do_sample": True,
               "temperature": 0.6, "top_p": 0.95, "top_k": 20}
        (tmp / "generation_config.json").write_text(json.dumps(gen, indent=2))
    for name in TOKENIZER_FILES:
        if source and (source / name).exists():
            shutil.copyfile(source / name, tmp / name)  # not copy(): the mode comes from the umask
    for name, text in (extra_files() if extra_files else {}).items():
        (tmp / name).write_text(text)


def check_out_dir(out_dir, marker: str, inputs=()):
    """Refuse, before any work, an --out that replacing whole (save_checkpoint) would lose data: it must be new, empty,
    or this script's own earlier output — holding `marker`, a file only this script writes (merge.py's
    merge_report.json) — and never an input, a directory holding one, or the working directory."""
    out = Path(out_dir).resolve()
    for path in inputs:
        if out == Path(path).resolve() or out in Path(path).resolve().parents:
            raise CheckpointError(f"--out {out_dir} is (or holds) the input {path}, which replacing it would delete; "
                                  f"choose another --out")
    if out == Path.cwd() or out in Path.cwd().parents:
        raise CheckpointError(f"--out {out_dir} is (or holds) the working directory; choose a new directory")
    if out.exists() and not (out.is_dir() and (not any(out.iterdir()) or (out / marker).is_file())):
        raise CheckpointError(f"--out {out_dir} exists and is not an earlier output of this script (it has no "
                              f"{marker}), and it would be replaced whole: remove it yourself or choose another --out")


def _write_shard(directory: Path, i: int, tensors: dict) -> Path:
    path = directory / f"shard-{i:05d}.tmp"
    save_file(tensors, path, metadata={"format": "pt"})  # transformers requires format=pt
    os.chmod(path, 0o666 & ~_umask())  # safetensors (0.8) writes through a 0600 temporary file: private to us
    return path


def _umask() -> int:
    """The process's umask, which can only be read by setting it: to 0o077 for the instant, so that a file another
    thread creates meanwhile is only more private."""
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


def _replace_dir(new: Path, target: Path):
    """Put `new` at `target` by renames only, so a reader never sees a half-written checkpoint."""
    if target.exists():
        old = temp_path(target, "old")
        target.rename(old)
        new.rename(target)
        shutil.rmtree(old)
    else:
        new.rename(target)


def save_model(model: Qwen3ForCausalLM, out_dir, source_dir=None, max_shard_bytes=2 * 2**30):
    save_checkpoint(out_dir, model.state_dict().items(), model.config, source_dir, max_shard_bytes)


# -----------------------------------------------------------------------------
# Native generation: static KV cache, prefill + one-token decode steps (as gpt-fast), batched with left padding


class KVCache(nn.Module):
    """Keys/values of one layer for B rows and S_max columns. Rows are left-padded so all of them write the same
    column at each step; `valid` (B, S_max) marks real tokens so attention skips the padding."""

    def __init__(self, B, S_max, n_kv_heads, head_dim, dtype, device, valid):
        super().__init__()
        # zeros: a masked column still meets its value in attention (0 * NaN is NaN), and columns left of a prefill
        # group's longest prompt are never written
        self.k = torch.zeros(B, n_kv_heads, S_max, head_dim, dtype=dtype, device=device)
        self.v = torch.zeros_like(self.k)
        self.valid = valid  # shared by all layers

    def update(self, start: int, k, v):  # k, v: (B, n_kv, T, head_dim) for columns start .. start+T-1
        end = start + k.shape[2]
        self.k[:, :, start:end] = k
        self.v[:, :, start:end] = v
        return self.k[:, :, :end], self.v[:, :, :end]  # only the columns written so far: attention reads no more

    def attention_mask(self, start: int, T: int):
        """(B, 1, T, start+T): causal over columns, real keys only — and each query always sees itself, so a padding
        query never has a fully masked row (some SDPA backends return NaN for one, and 0 * NaN leaks through values)."""
        end = start + T
        if T == 1:  # a decode step: its own column is valid, and every earlier one is causal
            return self.valid[:, None, None, :end]
        cols = torch.arange(end, device=self.valid.device)
        pos = cols[start:]
        causal = cols[None, :] <= pos[:, None]  # (T, end)
        own = cols[None, :] == pos[:, None]
        return ((causal[None] & self.valid[:, None, :end]) | own[None])[:, None]


@dataclass
class SamplingParams:
    max_new_tokens: int = 256
    temperature: float = 1.0  # 0 = greedy
    top_p: float = 1.0
    top_k: int = 0  # 0 = off
    seed: int | None = None
    stop_token_ids: list[int] = field(default_factory=list)


def sample_next(logits, sp: SamplingParams, generator):
    """Pick one token per row from fp32 logits (B, V). Returns (tokens, logprobs) where the logprob is that of the
    temperature-scaled distribution, log_softmax(logits / T) — what the trainer recomputes for the same token — and
    not of the top-k/top-p truncated one. Order as vLLM: temperature, then top-k, then top-p."""
    if sp.temperature == 0:
        tokens = logits.argmax(-1)
        return tokens, torch.log_softmax(logits, -1).gather(-1, tokens[:, None])[:, 0]
    logprobs = torch.log_softmax(logits / sp.temperature, -1)
    filtered = logprobs.clone()
    if sp.top_k > 0:
        kth = filtered.topk(min(sp.top_k, filtered.shape[-1]), -1).values[:, -1:]
        filtered[filtered < kth] = -math.inf
    if sp.top_p < 1.0:
        sorted_lp, order = filtered.sort(-1, descending=True)
        cum = sorted_lp.softmax(-1).cumsum(-1)
        drop = cum - sorted_lp.softmax(-1) > sp.top_p  # keep the smallest prefix whose mass reaches top_p
        filtered.scatter_(-1, order, sorted_lp.masked_fill(drop, -math.inf))
    tokens = torch.multinomial(filtered.softmax(-1), 1, generator=generator)[:, 0]
    return tokens, logprobs.gather(-1, tokens[:, None])[:, 0]


def decode_step(model: Qwen3ForCausalLM, tokens, positions, caches, col: int, rope):
    """tokens, positions (B, T) written at cache columns col .. col+T-1 -> fp32 logits (B, V) of the last one."""
    return model.logits(model(tokens, positions, caches, col, rope)[:, -1])


# The decode step through inductor: it fuses the ~50 small ops per layer around the matmuls and attention (norms, RoPE,
# SiLU, residuals), which eager runs one dispatch at a time. dynamic=True compiles once for every batch size and cache
# column (symbolic shapes), so the columns a step attends to grow without a recompile. Compiled on first call. RoPE's
# cos/sin come from a table made once per generate call: inductor would recompute them inside every layer's kernels
# (measured ~1 ms of a ~15 ms step at batch 64). Wrapped on first use, not at import: torch.compile imports dynamo and
# inductor (and with them Triton, before a test can set TRITON_INTERPRET): measured 0.18 GiB and 2.3 s here, in every
# process that imports model.
@functools.cache
def compiled_decode_step():
    return torch.compile(decode_step, dynamic=True)


PREFILL_ROWS = 16  # rows per prefill group


def prefill(model: Qwen3ForCausalLM, ids, positions, caches, rope):
    """Runs the left-padded prompts ids (B, L) into the caches' first L columns -> fp32 logits (B, V) of each prompt's
    last token. Rows go in groups of PREFILL_ROWS of similar length, each group padded only to its own longest prompt:
    for 64 prompts of 8-47 tokens (bench/generate.py) that is 2,000 tokens through the model instead of 3,008."""
    B, L = ids.shape
    valid = caches[0].valid[:, :L]
    lengths = valid.sum(1)
    logits = torch.empty(B, model.config.vocab_size, device=ids.device)
    for rows in lengths.argsort(stable=True).split(PREFILL_ROWS):
        start = L - int(lengths[rows].max())
        group = [KVCache(len(rows), L - start, c.k.shape[1], c.k.shape[3], c.k.dtype, c.k.device, valid[rows, start:])
                 for c in caches]
        logits[rows] = decode_step(model, ids[rows, start:], positions[rows, start:], group, 0, rope)
        for c, g in zip(caches, group):
            c.k[rows, :, start:L], c.v[rows, :, start:L] = g.k, g.v
    return logits


@torch.no_grad()
def generate(model: Qwen3ForCausalLM, prompts: list[list[int]], sp: SamplingParams, pad_id: int = 0,
             compile: bool = False, on_finish=None):
    """Batched sampling for prompts of different lengths. Returns one dict per prompt: `token_ids` (generated, ending
    with the stop token when one was hit), `logprobs` (one per generated token) and `finish_reason` ('stop'|'length').
    compile=True runs the decode steps through compiled_decode_step: the same tokens (tested), faster per step, once
    the process has paid the compile (tens of seconds on CPU, then cached on disk by inductor).
    on_finish(b, result) is called with each prompt's result as soon as it is complete - at its stop token, while
    the rest of the batch decodes on - so that a caller can start on it (score it) early.
    Rows that stopped leave the batch (a quarter of it at a time), so the decode costs what the running rows need. A
    sampled row's tokens depend on the seed and on which rows still run beside it (each step's draws are taken over
    the rows in the batch): the same call gives the same samples; greedy rows are each their prompt's alone."""
    device = model.lm_head.weight.device
    cfg, B = model.config, len(prompts)
    L = max(len(p) for p in prompts)
    S_max = L + sp.max_new_tokens
    ids = torch.full((B, L), pad_id, dtype=torch.long, device=device)
    valid = torch.zeros(B, S_max, dtype=torch.bool, device=device)
    for b, p in enumerate(prompts):  # left padding: every prompt ends at column L-1
        ids[b, L - len(p):] = torch.tensor(p, dtype=torch.long)
        valid[b, L - len(p):L] = True
    positions = (valid[:, :L].long().cumsum(1) - 1).clamp(min=0)  # (B, L) positions restart at each prompt's start
    caches = [KVCache(B, S_max, cfg.num_key_value_heads, cfg.head_dim, model.lm_head.weight.dtype, device, valid)
              for _ in range(cfg.num_hidden_layers)]
    generator = torch.Generator(device=device)
    generator.manual_seed(sp.seed if sp.seed is not None else torch.seed())
    stop = torch.tensor(sp.stop_token_ids or [-1], device=device)

    step_fn = compiled_decode_step() if compile else decode_step
    rope = rope_cos_sin(torch.arange(S_max, device=device), cfg.head_dim, cfg.rope_theta)  # (S_max, head_dim) x 2
    logits = prefill(model, ids, positions, caches, rope)  # eager: a few calls, each of its own shape
    next_pos = positions[:, -1:] + 1  # (B, 1)
    tokens_out = torch.full((B, sp.max_new_tokens), -1, device=device)  # -1: after the row's stop token
    logprobs_out = torch.zeros(B, sp.max_new_tokens, device=device)
    rows = torch.arange(B, device=device)  # the rows still in the batch, by their index in prompts
    done = torch.zeros(B, dtype=torch.bool, device=device)  # of those: which have stopped
    for step in range(sp.max_new_tokens):
        tokens, logprobs = sample_next(logits, sp, generator)
        tokens_out[rows, step] = tokens.masked_fill(done, -1)
        logprobs_out[rows, step] = logprobs
        finished = torch.isin(tokens, stop) & ~done
        done |= finished
        if on_finish is not None:
            for b in rows[finished].tolist():
                on_finish(b, result_of(tokens_out[b, :step + 1].tolist(), logprobs_out[b, :step + 1].tolist(), sp))
        if done.all() or step == sp.max_new_tokens - 1:
            break
        if done.sum() * 4 >= len(rows):  # a quarter of the batch has stopped: drop those rows from the decode
            # finished rows would otherwise decode to the end of the longest (GRPO's responses: a mean of 38 tokens
            # in a batch running to ~90); compacting only by quarters copies the caches a few times per call
            keep = (~done).nonzero().flatten()
            rows, tokens, next_pos, done, valid = rows[keep], tokens[keep], next_pos[keep], done[keep], valid[keep]
            for c in caches:
                c.k, c.v, c.valid = c.k[keep], c.v[keep], valid
        col = L + step  # rows that stopped since the last compaction decode on harmlessly: their outputs are masked
        valid[:, col] = True
        logits = step_fn(model, tokens[:, None], next_pos, caches, col, rope)
        next_pos += 1

    tokens_out, logprobs_out = tokens_out.tolist(), logprobs_out.tolist()
    results = [result_of(tokens_out[b], logprobs_out[b], sp) for b in range(B)]
    if on_finish is not None:
        for b in rows[~done].tolist():  # cut at max_new_tokens
            on_finish(b, results[b])
    return results


def result_of(tokens: list[int], logprobs: list[float], sp: SamplingParams) -> dict:
    """One prompt's generate() result from its row of sampled tokens (-1 after its stop token) and logprobs."""
    n = sum(t != -1 for t in tokens)
    token_ids = tokens[:n]
    finish = "stop" if token_ids and token_ids[-1] in sp.stop_token_ids else "length"
    return {"token_ids": token_ids, "logprobs": logprobs[:n], "finish_reason": finish}
