"""The one position resolver: "each" (one column per position) and "union" (one mask) on a hand-counted batch."""
from __future__ import annotations

import pytest
import torch

from mixprobe.errors import PositionError
from mixprobe.models.positions import (
    position_ids_from_mask,
    position_mask,
    resolve_index,
    resolve_positions,
    sweep_columns,
)

# row 0: 5 real tokens (prompt 3 + completion 2), no padding; row 1: 2 pads, prompt 2 + completion 1
MASK = torch.tensor([[1, 1, 1, 1, 1], [0, 0, 1, 1, 1]])
PLEN = torch.tensor([3, 2])


def cells(mask: torch.Tensor) -> list[list[int]]:
    return [row.nonzero().flatten().tolist() for row in mask]


def test_each_gives_one_column_per_position():
    assert resolve_positions("last_prompt", MASK, PLEN).tolist() == [[2], [3]]
    assert resolve_positions("mode_token", MASK, PLEN).tolist() == [[3], [4]]
    assert resolve_positions([0, -1, "mode_token"], MASK, PLEN).tolist() == [[0, 2, 3], [2, 3, 4]]
    assert resolve_positions("all", MASK).tolist() == [list(range(5))] * 2
    assert resolve_index(1, MASK, PLEN).tolist() == [1, 3]
    sel = torch.tensor([[0, 0, 1, 1, 0], [0, 0, 0, 1, 1]], dtype=torch.bool)
    assert resolve_positions(sel, MASK).tolist() == [[2, 3], [3, 4]]


def test_union_gives_one_mask():
    assert cells(position_mask([0, -1], MASK, PLEN)) == [[0, 2], [2, 3]]
    assert cells(position_mask("all", MASK)) == [[0, 1, 2, 3, 4], [2, 3, 4]]  # real tokens only
    assert cells(position_mask("prompt_onwards", MASK, PLEN)) == [[2, 3, 4], [3, 4]]
    assert cells(position_mask(torch.tensor([1, 0, 0, 0, 1]), MASK)) == [[0, 4], [0, 4]]  # a [T] mask broadcasts


def test_non_strict_leaves_short_rows_out_and_sweeps_cover_the_longest_row():
    assert cells(position_mask(4, MASK, strict=False)) == [[4], []]
    with pytest.raises(PositionError, match="outside the sequence"):
        position_mask(4, MASK)
    cols, strict = sweep_columns("each", MASK)
    assert cols == [0, 1, 2, 3, 4] and strict is False
    assert sweep_columns(["last_prompt", (0, 1)], MASK) == (["last_prompt", (0, 1)], True)


def test_bad_positions_are_named():
    with pytest.raises(PositionError, match="needs a completion"):
        resolve_positions("mode_token", MASK)                      # no prompt lengths: nothing follows the prompt
    with pytest.raises(PositionError, match="request it alone"):
        resolve_positions(["all", 0], MASK)
    with pytest.raises(PositionError, match="unknown position"):
        position_mask("middle", MASK)
    with pytest.raises(PositionError, match="same .non-zero. number"):
        resolve_positions(torch.tensor([[1, 0, 0, 0, 0], [0, 0, 1, 1, 0]], dtype=torch.bool), MASK)
    with pytest.raises(PositionError, match="padding"):
        resolve_positions(torch.tensor([[1, 0, 0, 0, 0], [1, 0, 0, 0, 0]], dtype=torch.bool), MASK)
    with pytest.raises(PositionError, match="shape"):
        position_mask(torch.ones(3, dtype=torch.bool), MASK)
    with pytest.raises(PositionError, match="prompt_lengths has 1 rows"):
        resolve_positions("last_prompt", MASK, torch.tensor([3]))


def test_position_ids_count_from_the_first_real_token():
    assert position_ids_from_mask(MASK).tolist() == [[0, 1, 2, 3, 4], [0, 0, 0, 1, 2]]
