"""mixture.studies: the organism's probe split, stacked for fit_probes."""
from __future__ import annotations

import numpy as np
import pytest

from mixprobe.errors import DataError


def test_expressed_split_stacked_refuses_mixed_widths():
    """The organism's split stacks its sites for ``fit_probes``; sites of different widths cannot stack."""
    from mixprobe.mixture.studies import ExpressedSplit
    sp = ExpressedSplit(["a", "b"], {"a": np.zeros((3, 4)), "b": np.ones((3, 5))}, np.zeros(3),
                        {"a": np.zeros((2, 4)), "b": np.ones((2, 5))}, np.zeros(2))
    with pytest.raises(DataError, match="different widths.*'a': 4, 'b': 5"):
        sp.stacked()
    same = ExpressedSplit(["a", "b"], {"a": np.zeros((3, 4)), "b": np.ones((3, 4))}, np.arange(3),
                          {"a": np.zeros((2, 4)), "b": np.ones((2, 4))}, np.arange(2))
    Xtr, ytr, Xte, yte = same.stacked()
    assert Xtr.shape == (2, 3, 4) and Xtr.dtype == np.float32 and Xte[1].sum() == 8 and list(yte) == [0, 1]
