"""Steering vectors: one direction per site, with where it came from, saved as safetensors + JSON.

Problem: "add α·v at site s" needs a v that knows its site, its width and its provenance (which probe, which
checkpoint, which classes), and that survives a round trip to disk without pickle. Mechanism: a small dataclass
:class:`SteeringVector` — ``directions`` (site name → 1-D float tensor ``[d_model]``) plus JSON-able
``metadata``. Build it from a fitted probe (its weight direction: ``coef_`` for logistic/CCS, ``direction_``
for mass-mean/LAT/CRA), from class means (``mean(x | toward) − mean(x | away)`` per site), or from raw tensors.
``normalize=True`` (the default) stores unit vectors, so the dose ``α`` of :func:`mixprobe.steering.apply.steer`
is in activation-norm units; the original norms go to ``metadata["norms"]``.

Files: ``save(path)`` writes ``<path>.safetensors`` (one tensor per site, key = site name) and ``<path>.json``
(format tag, sites, width, metadata) atomically; ``load(path)`` reads them back (either file name or the stem).

Example:
    >>> import numpy as np, tempfile, os
    >>> rng = np.random.default_rng(0)
    >>> y = rng.integers(0, 2, 100)
    >>> X = rng.normal(size=(100, 8)) + 3 * np.outer(y, np.eye(8)[2])
    >>> v = SteeringVector.from_class_means({"resid_post.1": X}, y, toward=1, away=0)
    >>> v.sites, v.d_model, int(v["resid_post.1"].abs().argmax())
    (['resid_post.1'], 8, 2)
    >>> path = os.path.join(tempfile.mkdtemp(), "select_m1")
    >>> v.save(path)
    >>> w = SteeringVector.load(path)
    >>> bool((w["resid_post.1"] == v["resid_post.1"]).all()), w.metadata["source"]
    (True, 'class_means')

Constraints: one direction per site (stack several vectors by summing them beforehand); metadata must be
JSON-serialisable.
"""
from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from mixprobe._check import argument_error
from mixprobe.errors import DataError, ShapeError, StoreError
from mixprobe.io import atomic_path, atomic_write_json
from mixprobe.probes.validation import check_features, to_numpy

FORMAT = "mixprobe.steering/1"


def _stem(path: str | os.PathLike) -> Path:
    p = Path(path)
    return p.with_suffix("") if p.suffix in (".safetensors", ".json") else p


@dataclass
class SteeringVector:
    """Directions per site (``{site: Tensor[d]}``) plus JSON-able metadata."""

    directions: dict[str, torch.Tensor]
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.directions, Mapping):
            raise argument_error("SteeringVector", "directions", self.directions, "a dict {site: direction}")
        if not self.directions:
            raise DataError("a steering vector needs at least one site; pass {site: direction}")
        fixed = {}
        for site, v in self.directions.items():
            t = torch.as_tensor(to_numpy(v)) if not isinstance(v, torch.Tensor) else v.detach()
            t = t.reshape(-1) if t.ndim == 2 and 1 in t.shape else t
            if t.ndim != 1 or t.numel() == 0:
                raise ShapeError(f"the direction of site {site!r} must be 1-D [d_model], got shape {list(t.shape)}")
            if not bool(torch.isfinite(t).all()):
                raise DataError(f"the direction of site {site!r} contains NaN/inf")
            fixed[str(site)] = t.float().cpu().contiguous()
        self.directions = fixed

    # --- access --------------------------------------------------------------------------------------------------
    @property
    def sites(self) -> list[str]:
        return list(self.directions)

    @property
    def d_model(self) -> int:
        widths = {int(v.numel()) for v in self.directions.values()}
        if len(widths) != 1:
            raise ShapeError(f"the sites of this steering vector have different widths {sorted(widths)}")
        return widths.pop()

    def __getitem__(self, site: str) -> torch.Tensor:
        return self.directions[site]

    def scaled(self, alpha: float) -> SteeringVector:
        """A copy with every direction multiplied by ``alpha``."""
        return SteeringVector({s: v * alpha for s, v in self.directions.items()},
                              {**self.metadata, "scaled_by": float(alpha)})

    def __neg__(self) -> SteeringVector:
        return SteeringVector({s: -v for s, v in self.directions.items()}, {**self.metadata, "negated": True})

    # --- builders ------------------------------------------------------------------------------------------------
    @classmethod
    def from_tensors(cls, directions: Mapping[str, Any], *, normalize: bool = True,
                     metadata: Mapping[str, Any] | None = None) -> SteeringVector:
        """From raw directions (unit-normalised unless ``normalize=False``; norms kept in metadata)."""
        dirs = {s: torch.as_tensor(to_numpy(v), dtype=torch.float64).reshape(-1) for s, v in directions.items()}
        norms = {s: float(v.norm()) for s, v in dirs.items()}
        if normalize:
            zero = [s for s, n in norms.items() if n == 0.0]
            if zero:
                raise DataError(f"zero direction at sites {zero}; nothing to normalise")
            dirs = {s: v / norms[s] for s, v in dirs.items()}
        meta = {"source": "tensors", **(dict(metadata) if metadata else {}), "normalized": normalize, "norms": norms}
        return cls({s: v.float() for s, v in dirs.items()}, meta)

    @classmethod
    def from_probe(cls, probe: Any, site: str, *, normalize: bool = True,
                   metadata: Mapping[str, Any] | None = None) -> SteeringVector:
        """The weight direction of a fitted probe at ``site`` (points toward ``probe.classes_[1]``)."""
        w = getattr(probe, "direction_", None)
        if w is None:
            w = getattr(probe, "coef_", None)
        if w is None:
            raise DataError(f"{type(probe).__name__} has no direction_ or coef_; fit it first")
        w = to_numpy(w).reshape(-1)
        classes = getattr(probe, "classes_", None)
        meta = {"source": "probe", "probe": type(probe).__name__, "site": site,
                "toward": None if classes is None else np.asarray(classes)[1].item(),
                "away": None if classes is None else np.asarray(classes)[0].item(),
                "sign_identified": bool(getattr(probe, "sign_identified_", True)),
                **(dict(metadata) if metadata else {})}
        return cls.from_tensors({site: w}, normalize=normalize, metadata=meta)

    @classmethod
    def from_class_means(cls, features: Mapping[str, Any], labels: Any, *, toward: Any = 1, away: Any = 0,
                         normalize: bool = True, metadata: Mapping[str, Any] | None = None) -> SteeringVector:
        """``mean(x | label == toward) − mean(x | label == away)`` at every site of ``{site: [n, d]}``."""
        y = to_numpy(labels, None).reshape(-1)
        a, b = y == toward, y == away
        if not a.any() or not b.any():
            raise DataError(f"need rows labelled {toward!r} ({int(a.sum())}) and {away!r} ({int(b.sum())})")
        dirs = {}
        for s, X in features.items():
            X = check_features(X, site=s, allow_constant=True)
            if X.shape[0] != y.shape[0]:
                raise ShapeError(f"site {s!r} has {X.shape[0]} rows but there are {y.shape[0]} labels")
            dirs[s] = X[a].mean(0) - X[b].mean(0)
        meta = {"source": "class_means", "toward": _jsonable(toward), "away": _jsonable(away),
                "n_toward": int(a.sum()), "n_away": int(b.sum()), **(dict(metadata) if metadata else {})}
        return cls.from_tensors(dirs, normalize=normalize, metadata=meta)

    # --- files ---------------------------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> None:
        """Write ``<stem>.safetensors`` and ``<stem>.json`` (atomic renames; no pickle)."""
        stem = _stem(path)
        stem.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(stem.with_suffix(".safetensors")) as tmp:
            save_file({s: v.contiguous() for s, v in self.directions.items()}, str(tmp), metadata={"format": FORMAT})
        widths = {s: int(v.numel()) for s, v in self.directions.items()}
        atomic_write_json(stem.with_suffix(".json"), {"format": FORMAT, "sites": self.sites, "widths": widths,
                                                      "metadata": self.metadata})

    @classmethod
    def load(cls, path: str | os.PathLike) -> SteeringVector:
        """Read a vector written by :meth:`save` (pass the stem or either file)."""
        stem = _stem(path)
        st, js = stem.with_suffix(".safetensors"), stem.with_suffix(".json")
        if not st.exists() or not js.exists():
            raise StoreError(f"steering vector files {st.name} and {js.name} not both found in {stem.parent}")
        try:
            info = json.loads(js.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise StoreError(f"{js} is not valid JSON ({e}); write the vector again with SteeringVector.save") from None
        if not isinstance(info, dict) or info.get("format") != FORMAT:
            fmt = info.get("format") if isinstance(info, dict) else None
            raise StoreError(f"{js} is not a mixprobe steering vector (format {fmt!r})")
        tensors = load_file(str(st))
        if sorted(tensors) != sorted(info["sites"]):
            raise StoreError(f"{st.name} holds sites {sorted(tensors)} but {js.name} lists {info['sites']}")
        return cls({s: tensors[s] for s in info["sites"]}, info.get("metadata", {}))


def _jsonable(x: Any) -> Any:
    return x.item() if hasattr(x, "item") else x
