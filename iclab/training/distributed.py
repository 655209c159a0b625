"""Data-parallel training: the process group, ranks, the batch split, the collectives.

One large run uses torch's own engines, nothing of iclab's:

    torchrun --nproc_per_node N -m iclab train CFG.yaml [key=value ...]     # or: iclab train CFG.yaml --nproc N
    torchrun --nnodes M --nproc_per_node N --rdzv_backend c10d --rdzv_endpoint HOST:PORT -m iclab train CFG.yaml

Under torchrun (RANK / WORLD_SIZE / LOCAL_RANK in the environment) the trainer joins the process group on
first use: NCCL when training on CUDA (each rank on cuda:LOCAL_RANK), gloo on the CPU. Starting the ranks
(`--nproc`, the rendezvous, what a rank other than 0 runs) is the runs side's job: `iclab/launch.py`.
How the pieces fit:

- The global batch is the config's `training.batch_size`; every rank builds the global batch of step s
  from (seed, s) and keeps its own contiguous 1/world of it (`Workload.shard`), so the data of step s on
  rank r is a pure function of (seed, s, r) and 2 ranks x B/2 train exactly as 1 process x B (up to
  floating-point order). A batch size that does not divide by the world size is refused. Sequence
  workloads, whose loss is a mean over counted (non-ignored) tokens, divide each rank's sum by the global
  count, so unequal counts (or rows) per rank still give the global mean (see `SequenceWorkload.shard`).
  With dropout, rank r draws its masks from (seed, step, r) (`step_seed`).
- The model is wrapped in DistributedDataParallel (gradients averaged over ranks; every rank holds the whole
  model and optimizer state); `training.threads` still sets each rank's CPU threads. With
  `training.fsdp=true` it is sharded with FSDP2 instead (`fully_shard` on every block, then on the root:
  parameters, gradients and optimizer state split over the ranks, for models that do not fit one device);
  checkpoints then gather full state dicts (every rank takes part, rank 0 writes; the optimizer state keyed
  by parameter name, so such a checkpoint resumes with FSDP on any number of ranks, not without FSDP), and
  the final weights (an ordinary model.safetensors) and the evaluation come from the gathered model on rank 0.
- Rank 0 alone writes metrics, TensorBoard, checkpoints, the final weights and the evaluation; every rank
  loads the checkpoint on resume. The logged loss is the mean over ranks (one all-reduce per log or
  checkpoint step, none in the other steps). Ctrl-C / SIGTERM are agreed on at the next log or checkpoint
  step, where a checkpoint is saved and every rank stops.
- A rank that dies makes torchrun stop the others (its agent tears the group down); the survivors' failed
  collectives become `DistributedError: data-parallel rank failed ...`, and the checkpoints, written atomically
  by rank 0, stay as they were: resume with `--resume RUN_DIR` (same or another number of processes).
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from iclab.errors import IclabError

ENV_TIMEOUT = "ICLAB_DIST_TIMEOUT_S"  # seconds a collective may wait for a missing rank (default 600)


class DistributedError(IclabError, RuntimeError):
    """Data-parallel set-up or a collective failed; the message says which rank and what to do."""


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def parallel(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def device(self, device: torch.device) -> torch.device:
        """The device of this rank: cuda:LOCAL_RANK when training on CUDA, else `device`."""
        if self.parallel and device.type == "cuda":
            return torch.device("cuda", self.local_rank)
        return device

    # --- collectives (no-ops in a single process) -----------------------------------------------------------
    def barrier(self) -> None:
        if self.parallel:
            with collective("barrier"):
                dist.barrier()

    def window(self, loss_sum: torch.Tensor, stop: bool) -> tuple[torch.Tensor, bool]:
        """At a log/checkpoint step: the window's loss sum averaged over ranks, and whether any rank was
        interrupted (one all-reduce)."""
        if not self.parallel:
            return loss_sum, stop
        buf = torch.stack(
            [loss_sum.detach().double(), torch.full((), float(stop), dtype=torch.float64, device=loss_sum.device)]
        )
        with collective("all_reduce"):
            dist.all_reduce(buf)
        return (buf[0] / self.world).to(loss_sum.dtype), bool(buf[1] > 0)

    def same(self, value: int, what: str) -> None:
        """Check that every rank holds the same integer (e.g. the step it resumed from)."""
        if not self.parallel:
            return
        t = torch.tensor([value, -value], dtype=torch.float64, device=_coll_device(self))
        with collective("all_reduce"):
            dist.all_reduce(t, op=dist.ReduceOp.MAX)
        if int(t[0]) != value or int(-t[1]) != value:
            raise DistributedError(
                f"the ranks disagree on {what} (rank {self.rank}: {value}, range "
                f"{int(-t[1])}..{int(t[0])}); are all ranks reading the same run directory?"
            )


def _coll_device(d: Dist) -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if d.backend == "nccl" else torch.device("cpu")


class collective:
    """Turns a collective that failed because another rank died into one clear DistributedError."""

    def __init__(self, what: str):
        self.what = what

    def __enter__(self):
        return self

    def __exit__(self, typ, exc, tb):
        if exc is None or not isinstance(exc, RuntimeError) or isinstance(exc, DistributedError):
            return False
        raise DistributedError(rank_failed_message(f"{self.what}: {exc}")) from None


_PEER_LOST = (
    "connection closed",
    "connection reset",
    "broken pipe",
    "timed out",
    "timeout",
    "gloo",
    "nccl",
    "socket",
    "peer",
    "transport",
)


def lost_peer(e: BaseException) -> bool:
    """Whether an error raised in a training step is a failed collective (another rank gone)."""
    if isinstance(e, getattr(dist, "DistError", ())):
        return True
    msg = str(e).lower()
    return any(k in msg for k in _PEER_LOST)


PEER_LOST = "data-parallel rank failed: "  # how the error of a rank that lost its peers begins


def peer_lost(e: BaseException) -> bool:
    """Whether `e` is this rank's report that another rank died (the consequence, not the cause)."""
    return isinstance(e, DistributedError) and str(e).startswith(PEER_LOST)


def rank_failed_message(detail) -> str:
    detail = " ".join(str(detail).split())[:200]
    d = current()
    return (
        f"{PEER_LOST}rank {d.rank} of {d.world} lost its peers ({detail}); another rank "
        "probably died (see torchrun's report for which and why). Checkpoints are written atomically by rank 0: "
        "the latest one is intact; continue with --resume RUN_DIR"
    )


def in_torchrun() -> bool:
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


_STATE: Dist | None = None


def current(device: torch.device | None = None) -> Dist:
    """This process's place in the data-parallel group, joining it on first use under torchrun
    (`device` decides the backend: nccl for CUDA, gloo otherwise)."""
    global _STATE
    if _STATE is not None:
        return _STATE
    if not in_torchrun() or int(os.environ["WORLD_SIZE"]) <= 1:
        _STATE = Dist()
        return _STATE
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local = int(os.environ.get("LOCAL_RANK", 0))
    backend = "nccl" if device is not None and device.type == "cuda" else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(local)
    if not dist.is_initialized():
        timeout = datetime.timedelta(seconds=float(os.environ.get(ENV_TIMEOUT, 600)))
        try:
            dist.init_process_group(
                backend, timeout=timeout, **({"device_id": torch.device("cuda", local)} if backend == "nccl" else {})
            )
        except (RuntimeError, ValueError) as e:
            raise DistributedError(
                f"cannot join the data-parallel group (rank {rank} of {world}, {backend}): "
                f"{' '.join(str(e).split())[:300]}"
            ) from None
    _STATE = Dist(rank, world, local, backend)
    return _STATE


def shutdown() -> None:
    global _STATE
    if dist.is_initialized():
        dist.destroy_process_group()
    _STATE = None


def wrap(model: torch.nn.Module, d: Dist, device: torch.device, fsdp: bool = False) -> torch.nn.Module:
    """The module the step calls: DDP around `model` when data-parallel (FSDP2 in place with `fsdp`), else
    `model` itself."""
    if not d.parallel:
        return model
    if fsdp:
        import warnings

        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard

        # the read-out returns slices of its output: harmless here (the losses never modify them in place)
        warnings.filterwarnings("ignore", message=".*FSDP2-wrapped module.*returned a view tensor")
        with collective("FSDP set-up"):
            mesh = init_device_mesh(device.type, (d.world,))
            for block in getattr(model, "blocks", None) or []:
                fully_shard(block, mesh=mesh)
            fully_shard(model, mesh=mesh)
        return model
    from torch.nn.parallel import DistributedDataParallel as DDP

    with collective("broadcast of the initial weights"):
        return DDP(model, device_ids=[device.index] if device.type == "cuda" else None)


def plain(t: torch.Tensor) -> torch.Tensor:
    """A DTensor (FSDP: e.g. the gradient norm) as an ordinary tensor; anything else unchanged."""
    return t.full_tensor() if hasattr(t, "full_tensor") else t


def _sd_options():
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, cpu_offload=True)


def model_state(model: torch.nn.Module, sharded: bool) -> dict:
    """The model's full state dict (FSDP: gathered; call on every rank; complete on rank 0)."""
    if not sharded:
        return model.state_dict()
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    with collective("gathering the model state"):
        return get_model_state_dict(model, options=_sd_options())


def state_dicts(model: torch.nn.Module, opt, sharded: bool) -> tuple[dict, dict]:
    """(model, optimizer) state dicts to checkpoint (FSDP: full, gathered on every rank's call, complete on
    rank 0; the optimizer state keyed by parameter name)."""
    if not sharded:
        return model.state_dict(), opt.state_dict()
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_optimizer_state_dict

    parts = getattr(opt, "optimizers", None)  # iclab's MultiOptimizer (e.g. Muon + AdamW): one state per part
    with collective("gathering the checkpoint state"):
        model_sd = get_model_state_dict(model, options=_sd_options())
        if parts is not None:
            return model_sd, {"optimizers": [get_optimizer_state_dict(model, o, options=_sd_options()) for o in parts]}
        return model_sd, get_optimizer_state_dict(model, opt, options=_sd_options())


def load_model_state(model: torch.nn.Module, model_sd: dict, sharded: bool) -> None:
    """Load a full model state dict (FSDP: every rank, keeping its shards)."""
    if not sharded:
        model.load_state_dict(model_sd)
        return
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

    with collective("loading the model state"):
        set_model_state_dict(model, model_sd, options=StateDictOptions(full_state_dict=True))


def load_state_dicts(model: torch.nn.Module, opt, model_sd: dict, optim_sd: dict, sharded: bool) -> None:
    """The inverse of `state_dicts` (FSDP: every rank loads the full dicts and keeps its shards)."""
    if not sharded:
        model.load_state_dict(model_sd)
        opt.load_state_dict(optim_sd)
        return
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict, set_optimizer_state_dict

    opts = StateDictOptions(full_state_dict=True)
    parts = getattr(opt, "optimizers", None)
    with collective("loading the checkpoint state"):
        set_model_state_dict(model, model_sd, options=opts)
        if parts is not None:
            if len(optim_sd.get("optimizers", [])) != len(parts):
                raise ValueError("optimizer state has a different number of parts")
            for o, sd in zip(parts, optim_sd["optimizers"]):
                set_optimizer_state_dict(model, o, sd, options=opts)
        else:
            set_optimizer_state_dict(model, opt, optim_sd, options=opts)


class NoWriter:
    """The metrics writer of ranks other than 0."""

    def log(self, rec: dict) -> None:
        pass

    def close(self) -> None:
        pass


def check_batch(cfg, world: int) -> None:
    """training.batch_size must divide over the ranks."""
    if world > 1 and cfg.training.batch_size % world:
        raise DistributedError(
            f"training.batch_size={cfg.training.batch_size} does not divide over {world} data-parallel "
            f"processes: the global batch is split evenly; choose a multiple of {world}"
        )


def step_seed(seed: int, step: int, rank: int) -> int:
    """The seed of torch's global RNG (dropout) for `step` on `rank`: each rank draws its own masks, and a
    resumed run draws the same ones as an uninterrupted run (with dropout, 2 ranks x B/2 equal 1 x B in
    distribution, not bit for bit: the masks of a row depend on the rank that holds it)."""
    import numpy as np

    return int(np.random.SeedSequence([seed, step, rank, 0x5EED]).generate_state(1, dtype=np.uint64)[0] >> 1)
