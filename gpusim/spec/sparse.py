"""Spec vocabulary of unstructured-sparse weights: the Tiled-CSL tile shape and the sparsity
patterns a scenario may draw nonzeros from (the format itself: :mod:`gpusim.kernels.tiled_csl`)."""

from __future__ import annotations

from typing import Final, Literal

TILE_ROWS: Final = 128
"""Rows of one Tiled-CSL tile (Flash-LLM's ``TILE_M`` of the format, flash_llm.md section 2)."""
TILE_COLS: Final = 64
"""Columns of one Tiled-CSL tile (``TILE_K``)."""

SparsityPattern = Literal["uniform", "skewed_rows"]
"""Where the nonzeros fall: independently with one keep probability, or with row densities
spread log-normally around it."""


def check_tileable(m_rows: int, k_depth: int) -> None:
    """Raise ``ValueError`` unless ``m`` and ``k`` are whole numbers of Tiled-CSL tiles."""
    if m_rows % TILE_ROWS or k_depth % TILE_COLS:
        raise ValueError(
            f"Tiled-CSL needs m a multiple of {TILE_ROWS} and k a multiple of {TILE_COLS}, "
            f"got m = {m_rows}, k = {k_depth}"
        )
