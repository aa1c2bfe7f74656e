"""The tight packed format: one data structure for every method (dense, N:M, column combining, tight).

A `K x N` matrix `W` (layer `y = x @ W`) is cut into column tiles of width `C`; each tile `t` reads its
rows in its own order `row_perm[t]`; the permuted rows are cut into groups (`group_offsets`), and group
`g` of tile `t` occupies `heights[g, t]` physical rows of the array. Each physical slot holds one weight
and a lane index: the position of its input inside the group (what the PE's G:1 multiplexer selects).

The four methods are parameterisations of this one format:
- dense: groups of one row, height 1, identity permutations;
- N:M: groups of M rows, height N, identity permutations, overflow dropped;
- column combining: variable-size groups (at most alpha rows), height 1 (0 for its groups of empty rows),
  one permutation for all tiles;
- tight: groups of G rows, per-tile row permutations and a column-to-tile assignment found by annealing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tightcompress.errors import TightCompressError

FORMAT_VERSION = 2  # 2: SHA-256 of every tensor and of the metadata


@dataclass(eq=False)
class PackedMatrix:
    """A sparse `K x N` weight matrix packed into the tight format, plus what packing it cost.

    Arrays:
        group_offsets: `(n_groups + 1,)` start of each group in the permuted row order.
        row_perm: `(n_tiles, K)` original row index at each permuted position, per tile.
        col_perm: `(n_tiles * tile,)` original column at each array column of each tile; -1 is unused.
        heights: `(n_groups, n_tiles)` physical rows each group occupies in each tile.
        values: `(total_rows, tile)` slot weights, tiles stacked top to bottom, groups within a tile too.
        lanes: `(total_rows, tile)` slot lane index in `[0, group size)`; 0 in an unused slot.
    """

    K: int
    N: int
    group: int
    tile: int
    method: str
    height_cap: int | None
    group_offsets: np.ndarray
    row_perm: np.ndarray
    col_perm: np.ndarray
    heights: np.ndarray
    values: np.ndarray
    lanes: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)

    # ----------------------------------------------------------------------------------------- shape
    @property
    def n_tiles(self) -> int:
        return int(self.row_perm.shape[0])

    @property
    def n_groups(self) -> int:
        return int(self.group_offsets.shape[0] - 1)

    @property
    def group_sizes(self) -> np.ndarray:
        return np.diff(self.group_offsets)

    @property
    def tile_rows(self) -> np.ndarray:
        """Physical array rows each tile pass uses (`H_t = sum_g heights[g, t]`)."""
        return self.heights.sum(axis=0)

    @property
    def tile_row_offsets(self) -> np.ndarray:
        """Where each tile's slots start in `values` / `lanes`."""
        return np.concatenate([[0], np.cumsum(self.tile_rows)])

    # ---------------------------------------------------------------------------------------- figures
    @property
    def packed_slots(self) -> int:
        """Slots the packed matrix occupies: `sum_t H_t * C` (a partly used tile still costs C columns)."""
        return int(self.tile_rows.sum()) * self.tile

    @property
    def nnz(self) -> int:
        """Nonzero weights kept in the slots."""
        return int(np.count_nonzero(self.values))

    @property
    def input_nnz(self) -> int:
        """Nonzeros of the matrix given to the packer, before the method dropped any (`nnz` are kept)."""
        return int(self.info.get("input_nnz", self.nnz))

    @property
    def compression_rate(self) -> float:
        return self.K * self.N / max(self.packed_slots, 1)

    @property
    def utilization(self) -> float:
        """Kept nonzeros over packed slots."""
        return self.nnz / max(self.packed_slots, 1)

    @property
    def index_bits(self) -> int:
        """Bits of lane index per slot: `ceil(log2 G)` for a G:1 multiplexer (0 when G is 1)."""
        return math.ceil(math.log2(self.group)) if self.group > 1 else 0

    def storage_rate(self, weight_bits: int = 8) -> float:
        """Dense bits over packed bits, counting the lane index beside each slot's weight."""
        return self.K * self.N * weight_bits / max(self.packed_slots * (weight_bits + self.index_bits), 1)

    # ------------------------------------------------------------------------------------ slot lookup
    def slot_tiles(self) -> np.ndarray:
        """Tile of each physical row of `values`."""
        return np.repeat(np.arange(self.n_tiles), self.tile_rows)

    def slot_groups(self) -> np.ndarray:
        """Group of each physical row of `values`."""
        return np.concatenate(
            [np.repeat(np.arange(self.n_groups), self.heights[:, t]) for t in range(self.n_tiles)]
            or [np.zeros(0, dtype=np.int64)]
        ).astype(np.int64)

    def slot_sources(self) -> tuple[np.ndarray, np.ndarray]:
        """Original `(row, column)` of each slot's weight, each `(total_rows, tile)`; -1 where unused."""
        tiles = self.slot_tiles()
        groups = self.slot_groups()
        perm_pos = self.group_offsets[groups][:, None] + self.lanes.astype(np.int64)
        perm_pos = np.minimum(perm_pos, self.K - 1)  # unused slots may point past a short group
        src_row = self.row_perm[tiles[:, None], perm_pos].astype(np.int64)
        src_col = self.col_perm.reshape(self.n_tiles, self.tile)[tiles].astype(np.int64)
        used = (self.values != 0) & (src_col >= 0)
        return np.where(used, src_row, -1), np.where(used, src_col, -1)

    # ------------------------------------------------------------------------------------- semantics
    def to_dense(self) -> np.ndarray:
        """Rebuild the `K x N` matrix of kept weights (dropped weights come back as zero)."""
        src_row, src_col = self.slot_sources()
        used = src_row >= 0
        dense = np.zeros((self.K, self.N), dtype=self.values.dtype)
        dense[src_row[used], src_col[used]] = self.values[used]
        return dense

    def matmul(self, x: np.ndarray) -> np.ndarray:
        """`x @ W_kept` computed the way the array does: tile by tile, each slot multiplies the input its
        lane selects, partial sums run down each column. `x` is `(M, K)` (or `(K,)`)."""
        if hasattr(x, "detach") and hasattr(x, "cpu"):  # a torch tensor (requires_grad included)
            x = x.detach().cpu().float().numpy()
        x = np.asarray(x)
        if x.ndim not in (1, 2):
            raise TightCompressError(f"matmul input must be (K,) or (M, K), got shape {x.shape}")
        squeeze = x.ndim == 1
        x2 = np.atleast_2d(x)
        if x2.shape[1] != self.K:
            raise TightCompressError(f"matmul input has {x2.shape[1]} features, the matrix has K={self.K}")
        out_dtype = np.result_type(x2.dtype, self.values.dtype)
        out = np.zeros((x2.shape[0], self.N), dtype=out_dtype)
        groups = self.slot_groups()
        offsets = self.tile_row_offsets
        for t in range(self.n_tiles):
            rows = slice(offsets[t], offsets[t + 1])
            perm_pos = self.group_offsets[groups[rows]][:, None] + self.lanes[rows].astype(np.int64)
            source = self.row_perm[t][np.minimum(perm_pos, self.K - 1)]  # (H_t, C) input each slot reads
            partial = np.einsum("mhc,hc->mc", x2[:, source], self.values[rows].astype(out_dtype))
            cols = self.col_perm[t * self.tile : (t + 1) * self.tile]
            live = cols >= 0
            out[:, cols[live]] = partial[:, live]
        return out[0] if squeeze else out

    def validate(self) -> None:
        """Check every invariant of the format; raise `TightCompressError` naming the first one broken."""
        T, C, K = self.n_tiles, self.tile, self.K
        sizes = self.group_sizes
        if self.group_offsets[0] != 0 or self.group_offsets[-1] != K or np.any(sizes < 1):
            raise TightCompressError("group offsets must partition 0..K into non-empty groups")
        if np.any(sizes > self.group):
            raise TightCompressError(f"a group has more than G={self.group} rows")
        if self.row_perm.shape != (T, K):
            raise TightCompressError(f"row_perm has shape {self.row_perm.shape}, expected {(T, K)}")
        for t in range(T):
            if not np.array_equal(np.sort(self.row_perm[t]), np.arange(K)):
                raise TightCompressError(f"row_perm of tile {t} is not a permutation of 0..K-1")
        cols = self.col_perm[self.col_perm >= 0]
        if self.col_perm.shape != (T * C,) or not np.array_equal(np.sort(cols), np.arange(self.N)):
            raise TightCompressError("col_perm must place every column exactly once")
        if self.heights.shape != (self.n_groups, T) or np.any(self.heights < 0):
            raise TightCompressError("heights must be a non-negative (n_groups, n_tiles) array")
        if self.height_cap is not None and np.any(self.heights > self.height_cap):
            raise TightCompressError(f"a group is taller than the height cap {self.height_cap}")
        rows = int(self.tile_rows.sum())
        if self.values.shape != (rows, C) or self.lanes.shape != (rows, C):
            raise TightCompressError(f"values/lanes must have shape {(rows, C)}")
        group_of_row = self.slot_groups()
        size_of_row = sizes[group_of_row][:, None]
        if np.any(self.lanes < 0) or np.any(self.lanes >= size_of_row):
            raise TightCompressError("a lane index is outside its group")
        # Within each (tile, group, column) run of slots: used slots first, lanes strictly increasing.
        starts = np.concatenate([[0], np.cumsum(self.heights.T.ravel())])[:-1]
        run_start = np.zeros(rows, dtype=bool)
        run_start[starts[starts < rows]] = True
        used = self.values != 0
        prev_used = np.vstack([np.zeros((1, C), dtype=bool), used[:-1]])
        prev_lane = np.vstack([np.full((1, C), -1), self.lanes[:-1].astype(np.int64)])
        cont = ~run_start[:, None]
        if np.any(cont & used & ~prev_used):
            raise TightCompressError("an unused slot sits above a used one in a group")
        if np.any(cont & used & (self.lanes <= prev_lane)):
            raise TightCompressError("lane indices in a group are not strictly increasing")
        if np.any(~used & (self.lanes != 0)):
            raise TightCompressError("an unused slot has a non-zero lane index")
        pad_cols = (self.col_perm.reshape(T, C) < 0)[self.slot_tiles()]
        if np.any(pad_cols & used):
            raise TightCompressError("an unused array column holds a weight")

    # ----------------------------------------------------------------------------------------- report
    def report(self) -> dict[str, Any]:
        """The per-layer report fields (the `pack` JSON contract)."""
        info = self.info
        return {
            "name": info.get("name", "matrix"),
            "K": self.K,
            "N": self.N,
            "nnz": self.input_nnz,
            "kept_nnz": self.nnz,
            "method": self.method,
            "group": self.group,
            "height": "auto" if self.height_cap is None else self.height_cap,
            "tile": self.tile,
            "n_tiles": self.n_tiles,
            "packed_rows": int(self.tile_rows.sum()),
            "packed_slots": self.packed_slots,
            "compression_rate": self.compression_rate,
            "utilization": self.utilization,
            "index_bits": self.index_bits,
            "storage_rate_bits": self.storage_rate(8),
            "dropped_nnz": int(info.get("dropped_nnz", 0)),
            "dropped_magnitude_fraction": float(info.get("dropped_magnitude_fraction", 0.0)),
            "input_magnitude": float(info.get("input_magnitude", 0.0)),
            "lower_bound_slots": int(info.get("lower_bound_slots", 0)),
            "lower_bound_dropped_magnitude_fraction": float(
                info.get("lower_bound_dropped_magnitude_fraction", 0.0)
            ),
            "seconds": float(info.get("seconds", 0.0)),
            **{k: v for k, v in info.get("extra", {}).items()},
        }
