"""The distributed edges, and only those: process-group set-up, FSDP2 sharding, streaming full tensors out of the
shards, and the trainer state that makes a run resumable. The maths in the trainers reads the same on 1 process
and on 64; this file is what changes between them.

Under `torchrun` the environment names the rank and world; run as plain `python`, the script becomes a world of
one, so there is a single code path (FSDP2 over one rank is a plain model with DTensor parameters).
"""
import json
import os
import shutil
import socket
from pathlib import Path

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
from torch.distributed.tensor import DTensor

from model import save_checkpoint, write_atomic


def init() -> tuple[int, int, torch.device]:
    """(rank, world_size, device). NCCL on GPUs, gloo on CPU (the CI path: `torchrun --nproc_per_node 2`)."""
    if "RANK" not in os.environ:  # plain `python train_*.py`: a world of one on a free local port
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    cuda = torch.cuda.is_available()
    local_rank = int(os.environ["LOCAL_RANK"])
    device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if cuda else "gloo")
    return dist.get_rank(), dist.get_world_size(), device


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


def full_tensors(model):
    """Yield (hf_name, full tensor) one at a time, all-gathering each shard as it is reached: the whole state dict
    never exists on one rank. Every rank must consume the stream (each step is a collective)."""
    for name, tensor in model.state_dict().items():
        yield name, tensor.full_tensor() if isinstance(tensor, DTensor) else tensor


def save_hf(model, out_dir, source_dir=None):
    """The model as an HF directory, written by rank 0 from the streamed full tensors."""
    tensors = full_tensors(model)
    if dist.get_rank() == 0:
        save_checkpoint(out_dir, tensors, model.config, source_dir)
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


def record_args(out_dir: Path, args):
    """Rank 0 prints the run's configuration and keeps it as out_dir/args.json (a temp file renamed into place)."""
    if dist.get_rank() == 0:
        print(json.dumps(vars(args)))
        write_atomic(out_dir / "args.json", json.dumps(vars(args), indent=2))


def save_step(out_dir, step: int, model, optimizer, source_dir=None):
    """out_dir/step_XXXXXXX/: the HF checkpoint, then the trainer state that makes it resumable."""
    step_dir = Path(out_dir) / f"step_{step:07d}"
    save_hf(model, step_dir, source_dir)
    save_trainer_state(step_dir, model, optimizer, {"step": step})


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
