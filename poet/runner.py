"""Where a sweep's solves run: a process pool, Dask, this process, or an executor given.

    runner = Runner(executor=None, scheduler=None, n_tasks=len(points))
    try:
        runner.run(points, args_of, solve_point, done)   # done(point, result, exception)
    finally:
        runner.close(interrupted=False)

Executors: ``executor=None`` or "process" is a `ProcessPoolExecutor` on the "spawn" start method
(never fork: the parent may hold torch's threads), one worker per core; "serial" runs in this
process; "dask" (or giving `scheduler`) uses a Dask distributed client, ``scheduler="local"``
(the default) starting a `LocalCluster` of two single-threaded worker processes and
``scheduler="tcp://host:port"`` connecting to a running one; any `concurrent.futures.Executor`
instance is used as given (and not shut down).

When a worker process of the runner's own pool dies (killed, out of memory) the pool is replaced
and the tasks it had not finished are submitted again, at most MAX_POOL_RESTARTS times; after
that, or for any other exception a task raises, `done` gets the exception. KeyboardInterrupt
passes through; `close(interrupted=True)` then stops the worker processes at once.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import multiprocessing
import os
import sys
from collections.abc import Callable, Sequence
from concurrent.futures.process import BrokenProcessPool
from typing import Any

__all__ = ["MAX_POOL_RESTARTS", "DASK_LOCAL", "Runner", "executor_kind", "progress_bar"]

_log = logging.getLogger(__name__)

MAX_POOL_RESTARTS = 2     # a dead worker process: replace the pool this often, then give up
DASK_LOCAL = {"n_workers": 2, "threads_per_worker": 1, "processes": True,
              "dashboard_address": None}

Done = Callable[[Any, Any, "BaseException | None"], None]


def executor_kind(executor, scheduler) -> str:
    """"instance", "serial", "process" or "dask"; ValueError for anything else."""
    if isinstance(executor, cf.Executor):
        if scheduler is not None:
            raise ValueError("give either an executor instance or scheduler, not both")
        return "instance"
    if executor is None:
        executor = "dask" if scheduler is not None else "process"
    if executor in ("serial", "process", "dask"):
        if scheduler is not None and executor != "dask":
            raise ValueError(f"scheduler={scheduler!r} applies to executor='dask' only")
        if executor == "dask" and scheduler is not None and scheduler != "local" and not (
                isinstance(scheduler, str) and "://" in scheduler):
            raise ValueError(f"scheduler must be 'local' or a Dask scheduler address such "
                             f"as 'tcp://10.0.0.5:8786', got {scheduler!r}")
        return executor
    raise ValueError(f"executor must be None, 'process', 'serial', 'dask' or a "
                     f"concurrent.futures.Executor, got {executor!r}")


class Runner:
    """An executor and how to stop it: owned ones are shut down (worker processes terminated on
    an interrupt); one given by the caller is left running."""

    def __init__(self, executor, scheduler, n_tasks: int):
        self.owned = True
        self.cleanup: list[Callable[[], None]] = []
        kind = executor_kind(executor, scheduler)
        self.serial = kind == "serial"
        self.executor = None
        if kind == "instance":
            self.executor, self.owned = executor, False
        elif kind == "process":
            self.workers = max(1, min(os.cpu_count() or 1, n_tasks))
            self.executor = self._pool()
        elif kind == "dask":
            self.executor = self._dask(scheduler or "local")
        self.restarts_left = MAX_POOL_RESTARTS if kind == "process" else 0

    # ---- running tasks ---------------------------------------------------------------------
    def run(self, tasks: Sequence, args_of: Callable[[Any], tuple], fn: Callable,
            done: Done) -> None:
        """Call ``fn(*args_of(task))`` for every task and report each outcome as
        ``done(task, result, None)`` or ``done(task, None, exception)``, in the order they
        finish. `args_of` is called when a task is submitted."""
        if self.serial:
            for task in tasks:
                try:
                    result = fn(*args_of(task))
                except Exception as e:
                    done(task, None, e)
                else:
                    done(task, result, None)
            return
        pending = list(tasks)
        while pending:
            pending = self._submit_all(pending, args_of, fn, done)
            if pending:
                _log.warning("a worker process died; restarting the pool for the %d points "
                             "it had not finished", len(pending))
                self.restart()

    def _submit_all(self, tasks: Sequence, args_of, fn, done: Done) -> list:
        """Submit every task, wait for all; return those lost to a broken pool that may be
        submitted again (`can_restart`)."""
        broken = []
        futures = {self.executor.submit(fn, *args_of(task)): task for task in tasks}
        try:
            for fut in cf.as_completed(futures):
                task = futures[fut]
                try:
                    result = fut.result()
                except BrokenProcessPool as e:
                    if self.can_restart():
                        broken.append(task)
                    else:
                        done(task, None, e)
                except Exception as e:
                    done(task, None, e)
                else:
                    done(task, result, None)
        except BaseException:
            for f in futures:
                f.cancel()
            raise
        return broken

    # ---- the pool --------------------------------------------------------------------------
    def _pool(self) -> cf.ProcessPoolExecutor:
        """A spawn pool whose workers die with this process (`poet.signals.worker_init`: on
        SIGTERM/SIGHUP or when the parent dies, even by SIGKILL, a worker ends its solver
        children and removes their files)."""
        from .signals import worker_init

        return cf.ProcessPoolExecutor(max_workers=self.workers,
                                      mp_context=multiprocessing.get_context("spawn"),
                                      initializer=worker_init)

    def can_restart(self) -> bool:
        """Whether a broken process pool (a worker killed, say by the OOM killer) may be
        replaced by a new one: only our own pool, at most MAX_POOL_RESTARTS times."""
        return self.restarts_left > 0

    def restart(self) -> None:
        """Replace the broken pool by a new one."""
        self.restarts_left -= 1
        self.executor.shutdown(wait=False, cancel_futures=True)
        self.executor = self._pool()

    def _dask(self, scheduler: str):
        try:
            from dask.distributed import Client, LocalCluster
        except ImportError:
            raise ImportError("executor='dask' needs dask.distributed, which is not installed: "
                              "pip install 'poet-energy[dask]' (or \"dask[distributed]\")"
                              ) from None
        if scheduler == "local":
            cluster = LocalCluster(**DASK_LOCAL)
            self.cleanup.append(cluster.close)
            client = Client(cluster)
        else:
            client = Client(scheduler)
        self.cleanup.insert(0, client.close)
        return client.get_executor()

    def close(self, interrupted: bool) -> None:
        """Shut an owned executor down: at once, terminating the workers, when interrupted;
        else after the running tasks. The Dask client and cluster are closed too."""
        if self.serial or not self.owned:
            return
        ex = self.executor
        if interrupted and isinstance(ex, cf.ProcessPoolExecutor):
            _terminate_workers(ex)
        try:
            if isinstance(ex, cf.ProcessPoolExecutor):
                ex.shutdown(wait=not interrupted, cancel_futures=True)
            else:   # Dask's ClientExecutor cancels its pending futures itself
                ex.shutdown(wait=not interrupted)
        finally:
            for fn in self.cleanup:
                try:
                    fn()
                except Exception as e:  # a failed close must not hide the sweep's own error
                    _log.warning("closing the Dask client/cluster failed: %s", e)


def _terminate_workers(ex: cf.ProcessPoolExecutor) -> None:
    """Stop a pool's solves now: a running task cannot be cancelled otherwise (Python 3.14 has
    terminate_workers(); before it, the pool's own process table)."""
    terminate = getattr(ex, "terminate_workers", None)
    if terminate is not None:
        terminate()
        return
    for proc in list((getattr(ex, "_processes", None) or {}).values()):
        if proc.is_alive():
            proc.terminate()


def progress_bar(total: int, initial: int, enabled: bool):
    """A tqdm bar on stderr (points done, time left), or None when not enabled."""
    if not enabled:
        return None
    from tqdm import tqdm
    return tqdm(total=total, initial=initial, desc="sweep", unit="point", file=sys.stderr,
                dynamic_ncols=True, smoothing=0.1)
