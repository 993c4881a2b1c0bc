"""Scenario: a topology, a workload, a calibration profile and run options."""

from __future__ import annotations

import hashlib
import threading
from functools import cached_property
from typing import Any

from pydantic import Field

from gpusim.fidelity import Fidelity as Fidelity  # re-exported: a field of Options
from gpusim.spec.base import FileName, NonNegativeInt, Spec
from gpusim.spec.profile import CalibrationProfile
from gpusim.spec.topology import NcclTransport, Topology
from gpusim.spec.workload import Workload


class Options(Spec):
    """How to simulate."""

    seed: NonNegativeInt = 0
    fidelity: Fidelity = Fidelity.des
    trace: bool = Field(default=False, description="Record a timeline (costs time and memory).")
    nccl_transport: NcclTransport | None = Field(
        default=None,
        description="Force NCCL's transport inside a node (auto | p2p | shm | net), overriding "
        "the topology's nccl_transport; absent: the topology's.",
    )


class Scenario(Spec):
    """What to simulate. ``topology``, ``workload`` and ``profile`` are inline objects or
    references: a shipped name (see `gpusim list`) or a path relative to the scenario file."""

    name: FileName
    description: str = ""
    topology: Topology | str
    workload: Workload | str
    profile: CalibrationProfile | str | None = Field(
        default=None, description="Calibration profile; the topology's default when absent."
    )
    options: Options = Options()


_JSON_OF: dict[int, tuple[Spec, bytes]] = {}
"""Recent :func:`json_bytes_of` answers by object identity (the object kept, so its id is not
reused)."""
_JSON_OF_SIZE = 16
_JSON_OF_LOCK = threading.Lock()


def json_bytes_of(spec: Spec) -> bytes:
    """``spec.model_dump_json()`` as UTF-8, computed once per object for the last few objects
    asked about (specs are frozen; a ``model_copy`` is another object)."""
    known = _JSON_OF.get(id(spec))
    if known is not None and known[0] is spec:
        return known[1]
    text = spec.model_dump_json().encode()
    with _JSON_OF_LOCK:
        if len(_JSON_OF) >= _JSON_OF_SIZE:
            _JSON_OF.pop(next(iter(_JSON_OF)))
        _JSON_OF[id(spec)] = (spec, text)
    return text


_THROUGH_TOPOLOGY: list[tuple[bytes, Spec, Any]] = []
"""The last :func:`_hash_through_topology` state: a sweep's points share name and topology."""


def _hash_through_topology(head: bytes, topology: Spec) -> Any:
    """A SHA-256 fed ``head``, the topology key and the topology's JSON (a copy of the state
    kept from the last call with the same head and topology object)."""
    with _JSON_OF_LOCK:
        known = _THROUGH_TOPOLOGY[0] if _THROUGH_TOPOLOGY else None
    if known is not None and known[0] == head and known[1] is topology:
        return known[2].copy()
    digest = hashlib.sha256(head)
    digest.update(b',"topology":')
    digest.update(json_bytes_of(topology))
    with _JSON_OF_LOCK:
        _THROUGH_TOPOLOGY[:] = [(head, topology, digest.copy())]
    return digest


class ResolvedScenario(Spec):
    """A scenario with every reference replaced by the validated object it names."""

    @cached_property
    def content_hash(self) -> str:
        """Hash of this scenario's JSON: equal content, equal hash, on any machine (computed
        once per object and pickled with it). Fields serialise in spec order and mappings in
        their input order, so two equal scenarios written with differently ordered keys may
        hash apart: a sweep then recomputes a point, it never mixes two results up.

        The JSON is :meth:`model_dump_json`'s, hashed in pieces: the topology's and profile's
        own (each serialised once per object, see :func:`json_bytes_of`: a sweep's points share
        them) and the rest of the scenario."""
        rest = self.model_dump_json(exclude={"topology", "profile"}).encode()
        # rest is {"name":..,"description":..,"workload":{..},"options":{..}}: strings escape
        # their quotes, so the first ',"workload":' is the key's, and options (flat, no key
        # named options) follows the workload's last ',"options":'.
        at_workload = rest.index(b',"workload":')
        at_options = rest.rindex(b',"options":')
        digest = _hash_through_topology(rest[:at_workload], self.topology)
        digest.update(rest[at_workload:at_options])
        digest.update(b',"profile":')
        digest.update(json_bytes_of(self.profile))
        digest.update(rest[at_options:])
        text: str = digest.hexdigest()
        return text[:16]

    def know_content_hash(self, content_hash: str) -> None:
        """Take ``content_hash`` as :attr:`content_hash` without computing it: only for a
        scenario made from exactly the inputs of one whose hash that is (a sweep's worker
        resolving a point its calling process validated, see
        :meth:`~gpusim.sweep.expand.SweepBase.resolve_validated`)."""
        self.__dict__["content_hash"] = content_hash

    name: FileName
    description: str = ""
    topology: Topology
    workload: Workload
    profile: CalibrationProfile
    options: Options = Options()
