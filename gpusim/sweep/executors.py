"""Executors a sweep can run on: local processes, a Dask LocalCluster, or a running Dask cluster."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Executor, ProcessPoolExecutor
from contextlib import contextmanager
from typing import Any, Literal

from gpusim.errors import UsageError

ExecutorKind = Literal["process", "dask"]


@contextmanager
def make_executor(
    kind: ExecutorKind = "process", workers: int = 1, scheduler: str | None = None
) -> Iterator[Executor]:
    """An executor for ``workers`` local processes, or Dask (a LocalCluster of ``workers``
    single-threaded worker processes, or the cluster at ``scheduler``)."""
    if scheduler is None and kind == "process":
        with ProcessPoolExecutor(max_workers=workers) as pool:
            yield pool
        return
    client, cluster = _dask_client(workers, scheduler)
    try:
        yield client.get_executor()
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _dask_client(workers: int, scheduler: str | None) -> tuple[Any, Any]:
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError:
        raise UsageError(
            "the dask executor needs Dask distributed: pip install 'gpusim[cluster]'"
        ) from None
    if scheduler is not None:
        return Client(scheduler), None
    cluster = LocalCluster(
        n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
    )
    return Client(cluster), cluster
