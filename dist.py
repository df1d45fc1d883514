"""The distributed edges, and only those: process-group set-up, FSDP2 sharding, streaming full tensors out of the
shards, and the trainer state that makes a run resumable. The maths in the trainers reads the same on 1 process
and on 64; this file is what changes between them.

Under `torchrun` the environment names the rank and world; run as plain `python`, the script becomes a world of
one, so there is a single code path (FSDP2 over one rank is a plain model with DTensor parameters).
"""
import ctypes
import fcntl
import json
import os
import shutil
import signal
import socket
import sys
from pathlib import Path

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
from torch.distributed.tensor import DTensor

from files import remove_stale_temps, write_atomic
from model import CheckpointReader, Qwen3ForCausalLM, fill_weights, recompute_activations, save_checkpoint

LAUNCHER = os.getppid()  # this process's parent when it started: under torchrun, the agent that launched the ranks


def init() -> tuple[int, int, torch.device]:
    """(rank, world_size, device). NCCL on GPUs, gloo on CPU (the CI path: `torchrun --nproc_per_node 2`)."""
    if "RANK" not in os.environ:  # plain `python train_*.py`: a world of one on a free local port
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    else:
        die_with_launcher()
    cuda = torch.cuda.is_available()
    local_rank = int(os.environ["LOCAL_RANK"])
    device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if cuda else "gloo")
    return dist.get_rank(), dist.get_world_size(), device


def die_with_launcher():
    """torchrun starts each rank in a session of its own, so a `kill -9` of the launcher's process group leaves the
    ranks running (parent 1), still writing checkpoints. Here the kernel is asked to SIGKILL this rank when its parent,
    the torchrun agent, dies (Linux prctl PR_SET_PDEATHSIG). An agent that died before the request took effect has
    already handed us to another parent, seen against the parent this module recorded when it was imported: then die
    now. (One that died before even that import is not seen here.)"""
    if sys.platform != "linux":
        return
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != LAUNCHER:
        os.kill(os.getpid(), signal.SIGKILL)


_lock = None  # the open out_dir/.lock of this process, held until it exits


def lock(out_dir):
    """Refuse to write into out_dir while another live run does: rank 0 holds an exclusive flock on out_dir/.lock
    for the life of its process. The kernel drops a flock when its process dies, however it dies, so a killed run
    leaves no stale lock for its resume to trip over. Every rank learns the outcome and exits alike. Holding it,
    rank 0 removes what a killed run's saves left half-written (files.remove_stale_temps: their writers are dead)."""
    global _lock
    holder = None
    if dist.get_rank() == 0:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        f = open(Path(out_dir) / ".lock", "a+")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            f.truncate(0)
            f.write(f"{os.getpid()}\n")
            f.flush()
            _lock = f
            remove_stale_temps(Path(out_dir))
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "?"
            f.close()
    holder = gather(holder)[0]
    if holder:
        raise SystemExit(f"--out {out_dir}: another live run (pid {holder}) is writing there and holds "
                         f"{Path(out_dir) / '.lock'}; wait for it or stop it, or choose another --out")


def shard(model, bf16: bool):
    """FSDP2 as torchtitan applies it: one `fully_shard` per decoder block (its parameters are gathered just before
    it runs and freed after), then the root for the embedding, final norm and head. bf16 compute with fp32 master
    weights and fp32 gradient reduction when asked (GPU); plain fp32 otherwise."""
    policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) if bf16 else \
        MixedPrecisionPolicy()
    for block in model.model.layers:
        fully_shard(block, mp_policy=policy)
    fully_shard(model, mp_policy=policy)
    return model


def load_sharded(path, device, bf16: bool, frozen=False, recompute=False):
    """The HF checkpoint at `path` as an FSDP2-sharded fp32 model, and no rank ever holds all of it: built on the meta
    device, sharded, materialised (each rank allocates only its shard), then each rank reads only its own rows of each
    tensor from the safetensors. Peak: the shard plus one tensor's rows in flight. `frozen`: no gradients (a
    reference, a teacher); `recompute`: activation recompute per block (model.recompute_activations)."""
    reader = CheckpointReader(path)
    model = _empty_sharded(reader.config, device, bf16, frozen, recompute)
    fill_weights(model, reader, local_rows)
    return model


def init_sharded(config, seed: int, device, bf16: bool, recompute=False):
    """A fresh sharded model (model.init_weights), equal to the unsharded one of the same seed: every rank draws each
    full tensor in turn and keeps its rows, so the peak is the shard plus one full tensor."""
    model = _empty_sharded(config, device, bf16, frozen=False, recompute=recompute)
    model.init_weights(seed, local_rows)
    return model


def _empty_sharded(config, device, bf16, frozen, recompute):
    with torch.device("meta"):
        model = Qwen3ForCausalLM(config)
    model.requires_grad_(not frozen)
    if recompute:
        recompute_activations(model)
    shard(model, bf16)
    # FSDP2 swaps each parameter's storage in place (DTensors are wrapper subclasses), so a tied head stays tied
    return model.to_empty(device=device)


def local_rows(param) -> tuple[torch.Tensor, int]:
    """(this rank's part of an FSDP2 parameter, its first row in the full tensor). FSDP2 shards dim 0 as torch.chunk
    does, ceil(n / world) rows per rank and fewer or none on the last ones; the DTensor reports where its chunk
    starts, as torch.distributed.checkpoint reads it."""
    return param.to_local(), param.__create_chunk_list__()[0].offsets[0]


def full_tensors(model):
    """Yield (hf_name, full tensor) one at a time, all-gathering each shard as it is reached: the whole state dict
    never exists on one rank. Every rank must consume the stream (each step is a collective)."""
    for name, tensor in model.state_dict().items():
        yield name, tensor.full_tensor() if isinstance(tensor, DTensor) else tensor


def save_hf(model, out_dir, source_dir=None, dtype=None):
    """The model as an HF directory, written by rank 0 from the streamed full tensors, in `dtype` (default: the
    parameters')."""
    tensors = full_tensors(model)
    if dist.get_rank() == 0:
        save_checkpoint(out_dir, tensors, model.config, source_dir, dtype=dtype)
    else:
        for _ in tensors:
            pass
    dist.barrier()


def all_reduce_sum(x: float) -> float:
    return _all_reduce(x, dist.ReduceOp.SUM)


def all_reduce_max(x: float) -> float:
    return _all_reduce(x, dist.ReduceOp.MAX)


def _all_reduce(x: float, op) -> float:
    # NCCL reduces GPU tensors only
    t = torch.tensor(x, dtype=torch.float64, device="cuda" if dist.get_backend() == "nccl" else "cpu")
    dist.all_reduce(t, op=op)
    return t.item()


def gather(obj) -> list:
    """Every rank's `obj` (any picklable value), in rank order, on every rank."""
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def balanced(items: list, lengths: list[int]) -> list:
    """This rank's share of every rank's `items`, dealt so that each rank gets about the same total length: longest
    first, each to the rank with the least so far (greedy LPT, as slime's --balance-data and verl's balance_batch).
    Only the lengths travel to everyone; each item goes once, from its rank to its new one. The deal is a function
    of the gathered lengths, so every rank computes the same one and a resumed run deals alike."""
    world, rank = dist.get_world_size(), dist.get_rank()
    if world == 1:
        return items
    everyone = [(r, i, n) for r, rank_lengths in enumerate(gather(lengths)) for i, n in enumerate(rank_lengths)]
    load, owner = [0] * world, {}
    for r, i, n in sorted(everyone, key=lambda x: -x[2]):  # stable: equal lengths keep rank order
        owner[r, i] = min(range(world), key=load.__getitem__)
        load[owner[r, i]] += n
    outgoing = [[] for _ in range(world)]
    for i, item in enumerate(items):
        outgoing[owner[rank, i]].append(item)
    incoming = []
    for source in range(world):  # an all-to-all of objects: one scatter per source rank
        box = [None]
        dist.scatter_object_list(box, outgoing if rank == source else None, src=source)
        incoming += box[0]
    return incoming


# -----------------------------------------------------------------------------
# Trainer state: step_XXXXXXX/ = an HF checkpoint + trainer_state/ (sharded model + optimizer via
# torch.distributed.checkpoint, each rank's RNG, and state.json with the step). trainer_state/ appears by one
# rename after everything else is on disk, so its presence means the checkpoint is complete.


def record_args(out_dir: Path, flags: dict):
    """Rank 0 prints the run's configuration (its parsed flags, vars(args)) and keeps it as out_dir/args.json."""
    if dist.get_rank() == 0:
        print(json.dumps(flags))
        write_atomic(out_dir / "args.json", json.dumps(flags, indent=2))


def save_step(out_dir, step: int, model, optimizer, source_dir=None, dtype=None, keep_last=0, **state):
    """out_dir/step_XXXXXXX/: the HF checkpoint (weights in `dtype`), then the trainer state that makes it resumable
    (fp32 master weights and optimizer, whatever `dtype`, and `state`: what else the trainer resumes from, e.g. its
    data position, beside the step in state.json); then only the newest `keep_last` trainer states stay (0: all)."""
    step_dir = Path(out_dir) / f"step_{step:07d}"
    save_hf(model, step_dir, source_dir, dtype)
    save_trainer_state(step_dir, model, optimizer, {"step": step, **state})
    if keep_last and dist.get_rank() == 0:
        prune_trainer_states(out_dir, keep_last)


def prune_trainer_states(out_dir, keep: int):
    """Delete the trainer state of every step but the newest `keep` and the one `latest` points to; the HF weights of
    every step stay: they are what evaluate and merge read, and a sixth of the size in bf16 (the state holds the fp32
    weights and both Adam moments). Each goes by a rename first, so a run killed mid-way leaves no state that looks
    complete."""
    out_dir = Path(out_dir)
    states = sorted(out_dir.glob("step_*/trainer_state"))
    latest = (out_dir / "latest").resolve()
    for state in states[:-keep]:
        if state.parent != latest:
            trash = state.with_name(".trainer_state.deleting")
            shutil.rmtree(trash, ignore_errors=True)  # left by a run killed while deleting
            state.rename(trash)
            shutil.rmtree(trash)


def link_latest(out_dir, step: int):
    """out_dir/latest -> step_XXXXXXX, replaced atomically (rank 0 only)."""
    if dist.get_rank() == 0:
        link = Path(out_dir) / ".latest.tmp"
        link.unlink(missing_ok=True)
        link.symlink_to(f"step_{step:07d}")
        os.replace(link, Path(out_dir) / "latest")


def save_trainer_state(step_dir: Path, model, optimizer, state: dict):
    step_dir = Path(step_dir)
    tmp = step_dir / "trainer_state.tmp"
    if dist.get_rank() == 0:
        shutil.rmtree(tmp, ignore_errors=True)
    dist.barrier()
    model_sd, optim_sd = get_state_dict(model, optimizer)
    dcp.save({"model": model_sd, "optim": optim_sd}, checkpoint_id=str(tmp))
    torch.save({"torch": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state_all()},
               tmp / f"rng_rank{dist.get_rank()}.pt")
    dist.barrier()
    if dist.get_rank() == 0:
        (tmp / "state.json").write_text(json.dumps(state))
        tmp.rename(step_dir / "trainer_state")
    dist.barrier()


def latest_checkpoint(out_dir) -> Path | None:
    """The newest step_* directory whose trainer state was completely written."""
    done = sorted(Path(out_dir).glob("step_*/trainer_state/state.json"))
    return done[-1].parent.parent if done else None


def steps_done(out_dir) -> int:
    """The step of out_dir's newest complete checkpoint, where a resume starts (0: none)."""
    latest = latest_checkpoint(out_dir)
    return json.loads((latest / "trainer_state" / "state.json").read_text())["step"] if latest else 0


def load_trainer_state(step_dir: Path, model, optimizer) -> dict:
    path = Path(step_dir) / "trainer_state"
    model_sd, optim_sd = get_state_dict(model, optimizer)
    state = {"model": model_sd, "optim": optim_sd}
    dcp.load(state, checkpoint_id=str(path))
    set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"])
    rng = torch.load(path / f"rng_rank{dist.get_rank()}.pt", weights_only=False)
    torch.set_rng_state(rng["torch"])
    if rng["cuda"]:
        torch.cuda.set_rng_state_all(rng["cuda"])
    return json.loads((path / "state.json").read_text())
