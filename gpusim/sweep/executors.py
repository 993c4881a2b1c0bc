"""Executors a sweep can run on: local processes, a Dask LocalCluster, or a running Dask cluster.

Local worker processes never outlive the sweep: each watches its parent and exits when the parent
is gone (killed, even with SIGKILL), ignores Ctrl-C (the parent decides what stops, and
:func:`stop_now` ends them at once), and so leaves no orphan computing for nobody.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Executor, ProcessPoolExecutor
from contextlib import contextmanager
from typing import Any, Literal

from gpusim.errors import UsageError

ExecutorKind = Literal["process", "dask"]

PARENT_POLL_S = 0.2
"""How often a local worker checks that the process that started it is still alive."""
CONNECT_TIMEOUT_S = 10.0
"""How long to wait for a Dask scheduler given by address before saying it cannot be reached."""


def _exit_with_parent(parent: int) -> None:
    """In a worker: end this process as soon as its parent is gone (re-parented)."""
    while os.getppid() == parent:
        time.sleep(PARENT_POLL_S)
    os._exit(1)


def _worker_init(parent: int) -> None:
    """Initializer of every local worker process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()


@contextmanager
def make_executor(
    kind: ExecutorKind = "process", workers: int = 1, scheduler: str | None = None
) -> Iterator[Executor]:
    """An executor for ``workers`` local processes, or Dask (a LocalCluster of ``workers``
    single-threaded worker processes, or the cluster at ``scheduler``)."""
    if scheduler is None and kind == "process":
        pool = ProcessPoolExecutor(
            max_workers=workers, initializer=_worker_init, initargs=(os.getpid(),)
        )
        try:
            yield pool
        except BaseException:
            stop_now(pool)
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        return
    client, cluster = _dask_client(workers, scheduler)
    try:
        yield client.get_executor()
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def stop_now(executor: Executor) -> None:
    """Cancel what has not started and, for local processes, end the workers mid-point (what
    they were computing is lost; what finished is already stored)."""
    executor.shutdown(wait=False, cancel_futures=True)
    if isinstance(executor, ProcessPoolExecutor):
        for child in multiprocessing.active_children():
            child.terminate()


def _dask_client(workers: int, scheduler: str | None) -> tuple[Any, Any]:
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError:
        raise UsageError(
            "the dask executor needs Dask distributed: pip install 'gpusim[cluster]'"
        ) from None
    if scheduler is not None:
        try:
            return Client(scheduler, timeout=f"{CONNECT_TIMEOUT_S:g}s"), None
        except (OSError, TimeoutError, ValueError) as exc:
            reason = " ".join(str(exc).split()) or type(exc).__name__
            raise UsageError(
                f"--scheduler {scheduler}: cannot reach the Dask scheduler within "
                f"{CONNECT_TIMEOUT_S:g} s ({reason})"
            ) from None
    cluster = LocalCluster(
        n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
    )
    return Client(cluster), cluster
