"""Flash-LLM's Tiled-CSL sparse format: how many nonzeros each 128 x 64 tile holds, and the bytes
the encoding occupies.

The format (flash_llm.md section 2; the encoder of ``kernels_ref/programs/spmm.cu`` writes the
same byte count): the ``m x k`` FP16 weight matrix is cut into tiles of ``TILE_ROWS x TILE_COLS``,
ordered row-major over ``(m / 128, k / 64)``; every nonzero is one 32-bit word (the FP16 value
and a 16-bit in-tile location); each tile's count is padded to a multiple of 4 (the kernel loads
128-bit vectors of 4 nonzeros); ``TileOffsets`` holds ``tiles + 2`` int32 entries. So

    storage bytes = 4 x sum(ceil4(nnz of tile)) + 4 x (tiles + 2)

Nonzeros per tile come from a seeded pattern: ``uniform`` (every weight kept with probability
``1 - sparsity``: each tile's count is Binomial(8192, 1 - sparsity)), or ``skewed_rows`` (each
row's keep probability is ``1 - sparsity`` times a log-normal weight of mean 1 and coefficient of
variation ``row_density_cv``, capped at 1: the row-imbalanced pruning that magnitude pruning of
real weights produces; each tile's count is the sum of its rows' Binomial(64, p_row)).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Final

import numpy as np
import numpy.typing as npt

from gpusim.spec.sparse import TILE_COLS, TILE_ROWS, SparsityPattern, check_tileable

BYTES_PER_NONZERO: Final = 4
"""A 16-bit FP16 value and a 16-bit in-tile location."""
VECTOR_NONZEROS: Final = 4
"""Nonzeros per 128-bit vector load: each tile's count is padded to a multiple of this."""
OFFSET_BYTES: Final = 4
"""One int32 ``TileOffsets`` entry."""


@dataclass(frozen=True)
class TiledCsl:
    """Per-tile nonzero counts of one encoded matrix, ``counts[row_tile, k_tile]``."""

    m_rows: int
    k_depth: int
    counts: npt.NDArray[np.int64]
    """Nonzeros stored per tile before padding, shape ``(m / 128, k / 64)``."""

    def __post_init__(self) -> None:
        expected = (self.m_rows // TILE_ROWS, self.k_depth // TILE_COLS)
        if self.counts.shape != expected:
            raise ValueError(f"counts have shape {self.counts.shape}, expected {expected}")
        if (self.counts < 0).any() or (self.counts > TILE_ROWS * TILE_COLS).any():
            raise ValueError(f"a tile holds between 0 and {TILE_ROWS * TILE_COLS} nonzeros")

    @property
    def tiles(self) -> int:
        """Tiles of the encoding: ``(m / 128) x (k / 64)``."""
        return int(self.counts.size)

    @property
    def nnz(self) -> int:
        """Nonzeros stored, before padding."""
        return int(self.counts.sum())

    @property
    def padded_counts(self) -> npt.NDArray[np.int64]:
        """Per-tile counts rounded up to a multiple of 4 (what the kernel loads)."""
        return -(-self.counts // VECTOR_NONZEROS) * VECTOR_NONZEROS

    @property
    def nnz_padded(self) -> int:
        """Nonzero words stored, padding included."""
        return int(self.padded_counts.sum())

    @property
    def storage_bytes(self) -> int:
        """Bytes of the encoding: ``4 nnz_padded + 4 (tiles + 2)``."""
        return BYTES_PER_NONZERO * self.nnz_padded + OFFSET_BYTES * (self.tiles + 2)


def encode_counts(
    m_rows: int,
    k_depth: int,
    sparsity: float,
    pattern: SparsityPattern = "uniform",
    *,
    row_density_cv: float = 0.5,
    seed: int = 0,
) -> TiledCsl:
    """The per-tile counts of an ``m x k`` matrix with ``sparsity`` (fraction of zeros) drawn
    from ``pattern`` with ``seed`` (see the module docstring). Cached: a decode step re-encodes
    the same weight shapes for every layer."""
    check_tileable(m_rows, k_depth)
    if not 0.0 <= sparsity <= 1.0:
        raise ValueError(f"sparsity must be in [0, 1], got {sparsity}")
    return _encode_counts(m_rows, k_depth, sparsity, pattern, row_density_cv, seed)


@lru_cache(maxsize=256)
def _encode_counts(
    m_rows: int,
    k_depth: int,
    sparsity: float,
    pattern: SparsityPattern,
    row_density_cv: float,
    seed: int,
) -> TiledCsl:
    rng = np.random.default_rng(seed)
    row_tiles, k_tiles = m_rows // TILE_ROWS, k_depth // TILE_COLS
    density = 1.0 - sparsity
    if pattern == "uniform":
        counts = rng.binomial(TILE_ROWS * TILE_COLS, density, size=(row_tiles, k_tiles))
    else:
        sigma2 = np.log1p(row_density_cv**2)
        weights = rng.lognormal(-sigma2 / 2.0, np.sqrt(sigma2), size=m_rows)
        p_row = np.minimum(1.0, density * weights)
        per_row = rng.binomial(TILE_COLS, p_row[:, None], size=(m_rows, k_tiles))
        counts = per_row.reshape(row_tiles, TILE_ROWS, k_tiles).sum(axis=1)
    counts = counts.astype(np.int64)
    counts.setflags(write=False)
    return TiledCsl(m_rows, k_depth, counts)
