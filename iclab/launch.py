"""Starting a data-parallel run: `iclab train ... --nproc N` and what each rank does under torchrun.

The training layer (`iclab/training/distributed.py`) holds the process group and the collectives; this
module, above `iclab.runs`, holds the launch side: `launch` runs `python -m iclab train ...` N times under
torch.distributed.run on this machine, `train_rank` is what a rank other than 0 does (rank 0 runs
`runs.train_run`, which writes the run), and `check_launch` refuses a batch that does not divide over the
ranks before anything starts.

What a launch relies on (torch 2.13's torch.distributed.run, read for issue 27; benchmarks/launch_stress.py
starts the 2-process quickstart N times under load and keeps every failing launch's output and rank logs):

- Ports. `--standalone` is a c10d rendezvous on localhost:0: the agent binds its rendezvous TCPStore to
  port 0 (the kernel picks a free port while binding it) and, unless TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1,
  binds the workers' store (MASTER_PORT) the same way, so no port is chosen first and bound later: two
  launches at once cannot collide. Do not set that variable or a fixed --master-port (the variable makes
  torch pick a free port, release it and rebind it later: a window for another process to take it).
- The run directory. Rank 0 alone creates, locks and writes it (`runs.train_run`); the other ranks only
  check it (`runs.prepare_run_dir`) and read it on resume. A rank's check comes before it joins the
  process group, and rank 0 creates the directory only after the DDP broadcast, a collective every rank
  joins, so no rank finds a directory that rank 0 started a moment ago.
- Failures. A rank that dies makes the others' next collective fail; they exit with PEER_LOST_EXIT (3)
  and torchrun stops the rest (SIGTERM, then SIGKILL after 30 s), recording them as failures too. It
  stamps failures in whole seconds, so the dead rank and the others usually tie; `launch` names the
  first failure torchrun saw that is not PEER_LOST_EXIT (see `_first_failure`). torchrun's own "Root
  Cause" line does not: when rank 0 has already exited after losing a killed rank 1, both are seen in the
  same poll and it names rank 0 (seen with a plain 2-rank gloo script and --monitor-interval 60). In 51
  iclab launches with rank 1 killed, rank 0 never exited before torchrun saw rank 1 dead (it was stopped
  by torchrun's SIGTERM), so that tie has not named the wrong rank here yet; nothing relies on it.
- Logs. torchrun's options default to PET_<OPTION> variables: `PET_LOG_DIR=DIR PET_TEE=3 iclab train ...
  --nproc 2` keeps each rank's stdout and stderr under DIR as well as on the terminal.
- Collectives wait ICLAB_DIST_TIMEOUT_S seconds (600) for a missing rank (`distributed.current`).
- Exit. A rank ends with `os._exit` after its command returned, its streams are flushed and it left the
  process group (`rank_main`), never through the interpreter's finalization. The cause (issue 27: 6 of 100
  launches under load, always rank 1; read from the aborted rank's core dump): gloo's process group outlives
  `destroy_process_group` while the DDP wrapper still references it, so its worker threads run on; a
  worker that completed the last all-reduce drops that work, and with it the tensors' Python objects,
  a moment later. When the main thread reached `Py_Finalize` first, the worker's GIL request made it
  call `pthread_exit` inside a noexcept destructor (`~AsyncAllreduceWork`): std::terminate, "terminate
  called without an active exception", SIGABRT, although training had finished. Skipping finalization
  loses nothing: rank 0 has written and closed every file by then, the other ranks write none, and the
  process's sockets close at exit either way (0 failures in 100 stressed launches with it).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from pathlib import Path

from iclab.config import Config
from iclab.runs import load_run_config, prepare_run_dir, train_run
from iclab.training import distributed
from iclab.training.trainer import Interrupted, Trainer

PEER_LOST_EXIT = 3  # a rank's exit code when it failed only because another rank died


def env_rank() -> int:
    """This process's rank from torchrun's environment (0 outside torchrun), without joining the group."""
    return int(os.environ.get("RANK", 0)) if distributed.in_torchrun() else 0


def wants_launch(nproc: int | None) -> bool:
    """Whether `iclab train --nproc N` should start N ranks (not when already one of them under torchrun)."""
    return nproc is not None and nproc > 1 and not distributed.in_torchrun()


def check_launch(cfg: Config | None, nproc: int, run_dir: Path, resume: bool) -> None:
    """Refuse, before any process starts, a training.batch_size that does not divide over `nproc` ranks
    (`cfg` None with resume: the run's saved config)."""
    if cfg is None and resume:
        cfg = load_run_config(run_dir)
    if cfg is not None:
        distributed.check_batch(cfg, nproc)


def signal_name(sig) -> str:
    try:
        return signal.Signals(int(sig)).name
    except (ValueError, TypeError):
        return str(sig)


def _first_failure(failures: dict) -> tuple[int, object]:
    """The failed rank to blame. torchrun stamps failures in whole seconds and lists them in the order it
    saw them: the rank that died first, then (same poll) any rank that already exited, then the ranks it
    stopped itself (SIGTERM, recorded for bookkeeping). A rank that exited with PEER_LOST_EXIT only reports
    another rank's death, so it comes after any other failure; among the rest, the earliest stamp and then
    torchrun's order decide (`min` keeps the first of equals; never the rank number: a killed rank 1 and the
    rank 0 that torchrun stopped in the same second would name rank 0)."""
    return min(failures.items(), key=lambda kv: (kv[1].exitcode == PEER_LOST_EXIT, kv[1].timestamp))


def launch(nproc: int, argv: list[str]) -> int:
    """`iclab train ... --nproc N`: run `python -m iclab <argv>` under torch.distributed.run on this machine;
    returns the exit code (0, or 1 with a one-line report of the failed rank, 130 when interrupted)."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    args = get_args_parser().parse_args(
        ["--standalone", "--nnodes", "1", "--nproc_per_node", str(nproc), "--module", "iclab", *argv]
    )
    try:
        run(args)
    except SignalException as e:  # Ctrl-C / SIGTERM: torchrun passed it on to the ranks, which agree to stop
        sys.stderr.write(
            f"interrupted ({signal_name(e.sigval)}): the ranks saved a checkpoint at their next log or "
            "checkpoint step if they reached it within torchrun's 30 s shutdown time (else the previous "
            f"checkpoint stands); continue with iclab train --resume RUN_DIR --nproc {nproc}\n"
        )
        return 130
    except ChildFailedError as e:
        if e.failures:
            rank, f = _first_failure(e.failures)
            why = f"exit code {f.exitcode}" if f.exitcode >= 0 else f"signal {-f.exitcode}"
            sys.stderr.write(
                f"error: data-parallel rank {rank} failed first ({why}); the other ranks were stopped. "
                "The latest checkpoint is intact: continue with iclab train --resume RUN_DIR "
                f"--nproc {nproc}\n"
            )
        return 1
    return 0


def rank_main(app) -> None:
    """`python -m iclab ...`: run the command line `app`; as a rank of a multi-process torchrun job, end the
    process with os._exit (exit code kept, streams flushed, uncaught errors printed) instead of the
    interpreter's finalization, which races gloo's worker threads (module docstring, "Exit")."""
    if not (distributed.in_torchrun() and int(os.environ["WORLD_SIZE"]) > 1):
        app()
        return
    code = 0
    try:
        app()
    except SystemExit as e:
        code = exit_code(e.code)
    except KeyboardInterrupt:
        code = 130
    except BaseException:
        sys.excepthook(*sys.exc_info())
        code = 1
    distributed.shutdown()  # a no-op when the command already left the group
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


def exit_code(code) -> int:
    """The process exit status `sys.exit(code)` would give (a message is printed to stderr, status 1)."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    sys.stderr.write(f"{code}\n")
    return 1


def train_process(
    cfg: Config | None, run_dir: Path, resume: bool, overwrite: bool, evaluate_after: bool
) -> dict | None:
    """This process's part of `iclab train`: the whole run outside torchrun and on rank 0 (`runs.train_run`,
    which alone writes the run directory), training only on the other ranks (returns None). Leaves the
    process group at the end; under torchrun, a rank that failed only because another one died exits with
    PEER_LOST_EXIT after printing its error, so that `launch` names the rank that died."""
    try:
        if env_rank() > 0:
            train_rank(cfg, run_dir, resume, overwrite)
            return None
        return train_run(cfg, run_dir, resume=resume, overwrite=overwrite, evaluate_after=evaluate_after)
    except distributed.DistributedError as e:
        if not (distributed.in_torchrun() and distributed.peer_lost(e)):
            raise
        sys.stderr.write(f"error: {e}\n")
        raise SystemExit(PEER_LOST_EXIT) from None
    finally:
        distributed.shutdown()  # leave the process group before exiting (no-op outside torchrun)


def train_rank(cfg: Config | None, run_dir: Path, resume: bool, overwrite: bool) -> None:
    """A rank other than 0: the same checks as rank 0, then train (no files written)."""
    cfg = prepare_run_dir(Path(run_dir), cfg, resume, overwrite)
    try:
        trainer = Trainer(cfg, Path(run_dir), resume=resume)
        trainer.run()
        trainer.full_model()  # FSDP: take part in gathering the final weights (rank 0 saves and evaluates them)
    except Interrupted:  # rank 0 saved the checkpoint and says so
        raise SystemExit(130) from None
