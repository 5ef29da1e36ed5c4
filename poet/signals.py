"""Clean exits: the command line and its pool workers leave no solver process and no file behind.

    from poet import signals
    signals.install()          # in the CLI's main(): SIGTERM and SIGHUP now act like Ctrl-C
    ProcessPoolExecutor(..., initializer=signals.worker_init)   # each worker dies with its parent

What ends a run, and what then happens:

- SIGINT, SIGTERM, SIGHUP to the CLI process (`install` makes the last two act like the first):
  KeyboardInterrupt in the main thread, so the CLI prints "poet: interrupted" and exits 130. On
  the way out every `finally` and `with` runs: a CBC child is killed and its temporary folder
  removed (`solver.backends`), a sweep's pool is shut down with its workers terminated
  (`poet.runner`), a paging folder is deleted (`poet.flash`). A signal ignored when `install`
  runs (SIGHUP under nohup) stays ignored; so does SIGINT in a background job of a shell script,
  where Python starts with it ignored.
- SIGKILL of the CLI: nothing in it runs any more. On Linux the kernel sends each CBC child
  SIGKILL (PR_SET_PDEATHSIG, set in the child before it runs) and each pool worker SIGTERM
  (`worker_init`); a worker then kills its own CBC children, removes their folders and exits.
  Elsewhere a worker notices within POLL_S that its parent changed and does the same; a CBC child
  started directly by the CLI then runs on until its own time limit.
- SIGTERM to a pool worker (the parent shutting the pool down on an interrupt): the same cleanup,
  then the worker exits with 128 + the signal number. SIGINT in a worker (a Ctrl-C reaches the
  whole process group) is left to the parent, which decides for its workers.

What cannot be cleaned up: the temporary folder of a CBC run in a process that was SIGKILLed
(its child dies, the folder stays in the temp directory as poet-cbc-*).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import time

from solver import backends

__all__ = ["install", "worker_init", "POLL_S"]

_log = logging.getLogger(__name__)

POLL_S = 0.5            # how often a pool worker checks that its parent is still alive

# the signals that end the CLI like Ctrl-C does (SIGHUP: the terminal or the session went away);
# SIGINT keeps Python's own handler, which already raises KeyboardInterrupt
_STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP")
                      if hasattr(signal, name))


def _interrupt(signum, frame):
    # an in-process solver (HiGHS) may swallow the exception raised inside its callback: the
    # flag makes its next callback stop it and the backend raise KeyboardInterrupt on return
    backends.request_interrupt()
    raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")


def install() -> bool:
    """Make SIGTERM and SIGHUP raise KeyboardInterrupt in the main thread, as SIGINT does, so
    that the CLI's own Ctrl-C path (exit 130, every `finally` run) handles them too.

    For the main thread of a program's entry point: it changes process-wide signal handlers.
    A signal ignored at the time (SIGHUP under nohup) stays ignored, and a handler that another
    program installed stays in place. Called in any other thread it changes nothing and returns
    False; else it returns True. Calling it again is harmless."""
    if threading.current_thread() is not threading.main_thread():
        return False
    for sig in _STOP_SIGNALS:
        if signal.getsignal(sig) in (signal.SIG_DFL, _interrupt):
            signal.signal(sig, _interrupt)
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _interrupt)
    return True


# ---- pool workers --------------------------------------------------------------------------

def _stop_worker(code: int) -> None:
    """End this worker now: kill its solver children, remove their files, exit with `code`.
    Safe in a signal handler: it takes no lock (so it does not log either)."""
    try:
        backends.stop_children()
    finally:
        os._exit(code)


def _on_worker_signal(signum, frame):
    _stop_worker(128 + signum)


def _leave_to_parent(signum, frame):
    """SIGINT in a worker: the parent got it too and ends the pool. A Python handler rather than
    SIG_IGN, which a CBC child would inherit through exec."""


def _watch_parent(parent: int) -> None:
    """Poll the parent's pid; when the worker has been re-parented (its parent died), end it.
    Runs in a daemon thread, so it acts even while the main thread is inside a solver's C code."""
    while True:
        time.sleep(POLL_S)
        if os.getppid() != parent:
            _log.warning("worker %d: parent %d is gone, exiting", os.getpid(), parent)
            _stop_worker(1)


def _parent_pid() -> int:
    """The pid of the process that started this one: multiprocessing knows it in a pool worker
    even if that parent has died already; else the current parent."""
    parent = multiprocessing.parent_process()
    pid = getattr(parent, "pid", None)
    return pid if isinstance(pid, int) else os.getppid()


def worker_init() -> None:
    """Initializer for each worker process of a pool (`ProcessPoolExecutor(initializer=...)`):
    the worker ends, killing its CBC children and removing their files, when its parent dies or
    when it gets SIGTERM or SIGHUP; SIGINT is left to the parent.

    On Linux the kernel sends the worker SIGTERM when the parent thread that started it ends
    (PR_SET_PDEATHSIG); on every system a daemon thread also checks the parent's pid every
    POLL_S seconds. Must run in the worker's main thread (initializers do)."""
    parent = _parent_pid()
    for sig in _STOP_SIGNALS:
        signal.signal(sig, _on_worker_signal)
    signal.signal(signal.SIGINT, _leave_to_parent)
    backends.set_parent_death_signal(signal.SIGTERM)
    if os.getppid() != parent:      # the parent died before the death signal was armed
        _stop_worker(1)
    threading.Thread(target=_watch_parent, args=(parent,), name="poet-parent-watch",
                     daemon=True).start()
