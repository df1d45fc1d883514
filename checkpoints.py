"""A base checkpoint and N models fine-tuned from it, checked against the base from the safetensors headers, then read
one tensor name (or a block of its rows) at a time across all of them: what merge.py merges and analyze.py compares.

Inputs in different float dtypes (a bf16 Hugging Face base, our fp32 RL outputs) are read as fp32. A model stored in a
coarser dtype than the base (bf16 beside an fp32 base) is read with the base's rounding residual θ_b − round(θ_b) added
back, so an entry it did not move reads as θ_b exactly, and rounding never counts as a task vector (on_base_precision).
"""
import json
import math
import os

import torch

from model import CheckpointError, CheckpointReader

# Is model i fine-tuned from the base? Fine-tuning moves a weight matrix by a relative norm ρ = ‖δ_i‖ / ‖θ_b‖ (RL:
# 1e-3 to 1e-2; SFT: a few %; the tests' heavy noise: 0.4), and a shift uncorrelated with the weights leaves
# cos(θ_i, θ_b) = 1 / √(1 + ρ²): above 0.5 up to ρ = √3, a matrix moved by 170% of its norm. A model trained from
# another initialisation has weights uncorrelated with the base's: cosine 0 ± 1/√n over n entries (≤ 0.05 for the
# smallest matrix of the tiny preset). 0.5 lies far from both. Only matrices: norm weights start at 1 in every Qwen3
# and stay near it, so they look related whatever the base. What this cannot see: a sibling of the base (the model
# fine-tuned from Qwen3-4B while the base is Qwen3-4B-Base) is as close as a fine-tune.
MIN_COSINE = 0.5
FLOAT_DTYPES = ("F32", "BF16", "F16")  # safetensors' names: inputs may mix these, the arithmetic is fp32


class Checkpoints:
    """The base and the N fine-tuned models, checked against the base from the safetensors headers alone, then read
    one tensor name at a time across all of them."""

    def __init__(self, base_dir, model_dirs: dict, device="cpu", check_base=True):
        self.base = CheckpointReader(base_dir)
        self.models = {label: CheckpointReader(d) for label, d in model_dirs.items()}
        self.labels = list(self.models)
        self.device = device
        self.check_base = check_base
        config = self.base.config
        tied = config.tie_word_embeddings  # a tied head is the embedding: handled once
        self.names = [n for n in self.base.names() if not (tied and n == "lm_head.weight")]
        base_headers = tensor_headers(self.base)
        self.shapes = {name: base_headers[name][0] for name in self.names}
        self.locations = [data_locations(self.base)]
        self.numel = {name: math.prod(shape) for name, shape in self.shapes.items()}
        for label, reader in self.models.items():
            where = f"--models {label}={reader.path}"
            theirs, ours = vars(reader.config), vars(config)
            for key in ours:
                if key != "dtype" and theirs[key] != ours[key]:  # dtypes may differ (on_base_precision)
                    raise CheckpointError(f"{where}: config.json has {key} = {theirs[key]!r} but the base "
                                          f"{self.base.path} has {ours[key]!r}; every model must be fine-tuned from "
                                          f"the base")
            headers = tensor_headers(reader)
            for name in self.names:
                if name not in headers:
                    raise CheckpointError(f"{where}: tensor {name!r} of the base {self.base.path} is missing from "
                                          f"this model")
                (shape, dtype), (base_shape, base_dtype) = headers[name], base_headers[name]
                if shape != base_shape or (dtype != base_dtype and not {dtype, base_dtype} <= set(FLOAT_DTYPES)):
                    raise CheckpointError(f"{where}: tensor {name!r} is {dtype} {list(shape)} but the base's is "
                                          f"{base_dtype} {list(base_shape)}; every model must share the base's "
                                          f"architecture")
            extra = [n for n in headers if n not in base_headers and not (tied and n == "lm_head.weight")]
            if extra:
                raise CheckpointError(f"{where}: tensor {extra[0]!r} is not in the base {self.base.path} "
                                      f"({len(extra)} extra tensor(s)); every model must share the base's architecture")
            self.locations.append(data_locations(reader))
        self.raw = [torch.empty(0, dtype=torch.uint8) for _ in self.locations]  # reused by every read: see read
        self.thetas = torch.empty(0, device=device)

    def read(self, name, rows: slice = slice(None)):
        """The base tensor as stored, and the N models' tensors stacked as fp32 (N, *shape), each read against the
        base at the base's precision; `rows` reads only those rows of dim 0. Checks that each model's weight matrix
        points the base's way, on the first block of rows read: a model of another base is uncorrelated with it on
        any rows. Both live in buffers that the next read reuses: a merge reads ~5 GB in blocks of a few MB, and
        fresh buffers would page-fault in every block (glibc returns allocations above 32 MB to the kernel on free).

        The bytes come from the page cache by one pread per input into those buffers, the least a read can copy:
        safe_open per block would parse the header and map the file each time, and a map kept open would count
        every page read so far in this process's resident memory."""
        start, stop, _ = rows.indices(self.shapes[name][0])
        shape = (stop - start, *self.shapes[name][1:])
        row_entries = math.prod(shape[1:])
        stored = []
        for i, locations in enumerate(self.locations):
            file, offset, dtype = locations[name]
            nbytes = math.prod(shape) * dtype.itemsize
            if self.raw[i].numel() < nbytes:
                self.raw[i] = torch.empty(nbytes, dtype=torch.uint8)
            with open(file, "rb", buffering=0) as f:
                got = os.preadv(f.fileno(), [self.raw[i][:nbytes].numpy()], offset + start * row_entries * dtype.itemsize)
            if got != nbytes:
                raise CheckpointError(f"{file}: tensor {name!r} is cut short ({got} of {nbytes} bytes read)")
            stored.append(self.raw[i][:nbytes].view(dtype).view(shape))
        base = stored[0].to(self.device)
        n_entries = len(self.models) * math.prod(shape)
        if self.thetas.numel() < n_entries:
            self.thetas = torch.empty(n_entries, device=self.device)
        thetas = self.thetas[:n_entries].view(len(self.models), *shape)
        for theta, model in zip(thetas, stored[1:]):
            if model.dtype == base.dtype:
                theta.copy_(model)  # to fp32 in the copy: the arithmetic is fp32
            else:
                theta.copy_(on_base_precision(model.to(self.device), base))
        if self.check_base and base.dim() == 2 and start == 0:
            b = base.flatten().float()
            # (N,); a zero matrix gives NaN, which passes
            cosine = thetas.flatten(1) @ b / (thetas.flatten(1).norm(dim=1) * b.norm())
            for label, c in zip(self.labels, cosine.tolist()):
                if c < MIN_COSINE:
                    raise CheckpointError(
                        f"--models {label}={self.models[label].path}: tensor {name!r} has cosine {c:.2f} with the "
                        f"base {self.base.path}'s (a fine-tune of it keeps ≥ {MIN_COSINE}, unrelated weights ~0): was "
                        f"it fine-tuned from another base? (--skip-base-check merges anyway)")
        return base, thetas


def on_base_precision(theta, base):
    """θ_i as fp32, with the base's rounding residual θ_b − round(θ_b) added back when θ_i is stored in another dtype
    than the base: an entry model i did not move then reads as θ_b exactly (bf16 saved from an fp32 base would
    otherwise shift every entry by up to 2^-9 of its value, above analyze.py's η = 1e-3). Finer than the base (an fp32
    model of a bf16 base) the residual is 0."""
    theta32 = theta.float()
    if theta.dtype != base.dtype:
        theta32 += base.float() - base.to(theta.dtype).float()
    return theta32


def tensor_headers(reader: CheckpointReader) -> dict:
    """name -> (shape, dtype) from the safetensors headers alone: validation reads no tensor data."""
    headers = {}
    for file in set(reader.file_of.values()):
        with reader.open(file) as f:
            for name in f.keys():
                tensor = f.get_slice(name)
                headers[name] = (tuple(tensor.get_shape()), tensor.get_dtype())
    return headers


SAFETENSORS_DTYPES = {"F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16, "F64": torch.float64}


def data_locations(reader: CheckpointReader) -> dict:
    """name -> (file, byte offset of its data, torch dtype), from the safetensors headers (the format: an 8-byte
    little-endian header length, the JSON header with each tensor's data_offsets, then the data)."""
    locations = {}
    for file in set(reader.file_of.values()):
        with open(file, "rb") as f:
            length = int.from_bytes(f.read(8), "little")
            header = json.loads(f.read(length))
        for name, entry in header.items():
            if name == "__metadata__":
                continue
            if entry["dtype"] not in SAFETENSORS_DTYPES:
                raise CheckpointError(f"{file}: tensor {name!r} is {entry['dtype']}; only float tensors "
                                      f"({', '.join(SAFETENSORS_DTYPES)}) are merged")
            locations[name] = (file, 8 + length + entry["data_offsets"][0], SAFETENSORS_DTYPES[entry["dtype"]])
    return locations
