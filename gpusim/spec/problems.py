"""Building blocks of the semantic checks that workload specs run against a topology.

A check yields :data:`Problem` pairs ``(location, reason)``: ``location`` is the JSON path of the
offending value inside the workload, as a tuple of keys and indices; the loader turns the first
problem into a one-line SpecError naming the file that value came from. Each workload spec class
has a ``check(topology)`` method built from these helpers, next to its fields.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from gpusim.spec.base import Dtype
from gpusim.spec.topology import Topology

Loc = tuple[int | str, ...]
Problem = tuple[Loc, str]


def gpu_problems(gpu: str, topology: Topology, loc: Loc) -> Iterator[Problem]:
    """``gpu`` (named at ``loc``) is a GPU of ``topology``."""
    if gpu not in {g.id for g in topology.gpus()}:
        yield loc, _not_a_gpu(gpu, topology)


def _not_a_gpu(gpu: str, topology: Topology) -> str:
    return f"'{gpu}' is not a GPU of topology '{topology.name}'"


def gpu_list_problems(
    gpus: Sequence[str] | None, topology: Topology, key: str
) -> Iterator[Problem]:
    """A workload's GPU list at ``key``: absent means every GPU of the topology (which must have
    one); when given, not empty, every id a GPU of the topology, none listed twice."""
    if gpus is None:
        if not topology.gpus():
            yield (key,), f"topology '{topology.name}' has no GPU"
        return
    if not gpus:
        yield (key,), "the GPU list is empty (leave it out for every GPU of the topology)"
    known = {g.id for g in topology.gpus()}
    for i, gid in enumerate(gpus):
        if gid not in known:
            yield (key, i), _not_a_gpu(gid, topology)
    seen: set[str] = set()
    for i, gid in enumerate(gpus):
        if gid in seen:
            yield (key, i), f"GPU '{gid}' is listed twice"
        seen.add(gid)


def chosen_gpus(gpus: Sequence[str] | None, topology: Topology) -> list[str]:
    """The GPU ids a workload runs on: ``gpus`` when given, else every GPU in topology order."""
    return list(gpus) if gpus is not None else [g.id for g in topology.gpus()]


def tensor_dtype_problems(
    dtype: Dtype, gpus: Sequence[str], topology: Topology, loc: Loc
) -> Iterator[Problem]:
    """Every GPU in ``gpus`` can multiply matrices in ``dtype`` (named at ``loc``): a
    tensor-core peak for it, or else a CUDA-core peak (a GPU without tensor cores for the dtype
    runs its GEMMs on the CUDA cores). Unknown ids are skipped (the GPU list's own check reports
    them); one problem per GPU model."""
    models = {g.id: g.model for g in topology.gpus()}
    reported: set[str] = set()
    for gid in gpus:
        model = models.get(gid)
        if model is None or model.name in reported:
            continue
        if dtype in model.tensor_peak_TFLOPS or dtype in model.cuda_core_peak_TFLOPS:
            continue
        reported.add(model.name)
        have = ", ".join(sorted(str(d) for d in model.tensor_peak_TFLOPS)) or "none"
        have_cc = ", ".join(sorted(str(d) for d in model.cuda_core_peak_TFLOPS)) or "none"
        yield (
            loc,
            (
                f"GPU '{gid}' ({model.name}) has no tensor-core peak for {dtype} (it has: {have}) "
                f"and no CUDA-core peak for it either (it has: {have_cc})"
            ),
        )
