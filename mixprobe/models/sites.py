"""The site vocabulary: one stable name for each activation, whatever backend runs the model.

Problem: HF modules, TransformerLens hook points and nnsight module paths all name the same activations
differently, and silently reading the wrong tensor (the block input instead of its output, the embedding before
or after the positional embedding) ruins every downstream probe. Mechanism: a :class:`Site` is
``(component, layer)`` with a short string form; its meaning follows the TransformerLens convention and is the
same in every backend (the backends map it to their own hook, see :mod:`mixprobe.models.backends`):

- ``embed``: token-embedding output (before the positional embedding for GPT-2; TL ``hook_embed``);
- ``resid_pre.L``: residual stream entering block ``L`` (TL ``blocks.L.hook_resid_pre``);
- ``z.L``: every attention head's output of block ``L`` before the output projection, i.e. the input of
  ``o_proj`` (GPT-2: ``attn.c_proj``; TL ``blocks.L.attn.hook_z``), flattened heads-major to
  ``[batch, seq, n_heads * d_head]`` so it has the ``[batch, seq, d]`` shape of every other site;
  :func:`split_heads` gives ``[..., n_heads, d_head]`` (head ``h`` is the slice ``h*d_head:(h+1)*d_head``);
- ``attn_out.L`` / ``mlp_out.L``: output of the attention / MLP sub-layer of block ``L``, before it is added;
- ``resid_post.L``: residual stream leaving block ``L``;
- ``final_norm``: output of the final norm (the input of the unembedding).

Example:
    >>> Site.parse("resid_post.3")
    Site(component='resid_post', layer=3)
    >>> str(Site("attn_out", 1)), str(Site.parse("embed"))
    ('attn_out.1', 'embed')
    >>> [str(s) for s in parse_sites("resid_post.*", n_layers=2)]
    ['resid_post.0', 'resid_post.1']
    >>> [str(s) for s in parse_sites(["final_norm", "mlp_out.1", "embed"], n_layers=2)]
    ['embed', 'mlp_out.1', 'final_norm']
    >>> [str(s) for s in parse_sites(["attn_out.0", "z.0", "resid_pre.0"], n_layers=2)]
    ['resid_pre.0', 'z.0', 'attn_out.0']
    >>> import torch
    >>> tuple(split_heads(torch.zeros(2, 5, 12), n_heads=4).shape)
    (2, 5, 4, 3)

Constraints: unknown components and layers out of range raise :class:`~mixprobe.errors.SiteError` (with the list
of valid names); ``parse_sites`` returns sites in execution order without duplicates, and an empty request is an
error, never an empty result.
"""
from __future__ import annotations

import operator
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mixprobe._check import checked
from mixprobe.errors import SiteError

if TYPE_CHECKING:
    import torch

LAYERED = ("resid_pre", "z", "attn_out", "mlp_out", "resid_post")  # execution order within a block
GLOBAL = ("embed", "final_norm")
COMPONENTS = ("embed", *LAYERED, "final_norm")
_LAYER = re.compile(r"-?[0-9]+")
_VOCAB_HINT = ("valid sites: embed, resid_pre.L, z.L (attention heads before o_proj), attn_out.L, mlp_out.L, "
               "resid_post.L, final_norm (L a layer or '*')")


@dataclass(frozen=True, order=False)
class Site:
    """One activation site: ``component`` (see the module docstring) and ``layer`` (``None`` for global sites)."""

    component: str
    layer: int | None = None

    def __post_init__(self) -> None:
        if self.component not in COMPONENTS:
            raise SiteError(f"unknown site component {self.component!r}; {_VOCAB_HINT}")
        if self.component in LAYERED:
            if not isinstance(self.layer, int) or isinstance(self.layer, bool):
                raise SiteError(f"site {self.component!r} needs an integer layer, e.g. '{self.component}.0'")
        elif self.layer is not None:
            raise SiteError(f"site {self.component!r} has no layer; write '{self.component}'")

    @classmethod
    def parse(cls, text: str | Site | tuple[str, int | None]) -> Site:
        """``"resid_post.3"`` → ``Site("resid_post", 3)``; a :class:`Site` is returned unchanged."""
        if isinstance(text, Site):
            return text
        if isinstance(text, tuple) and len(text) == 2:
            raw = text[1]                       # any integer (numpy's too) or None; never a bool, float or string
            if raw is not None and (isinstance(raw, bool) or not hasattr(type(raw), "__index__")):
                raise SiteError(f"the layer of site {text!r} must be an int or None, got {type(raw).__name__}; "
                                "pass e.g. ('resid_post', 3)")
            return cls(str(text[0]), None if raw is None else operator.index(raw))
        if not isinstance(text, str):
            raise SiteError(f"a site is a string such as 'resid_post.3' or a Site, got {type(text).__name__}")
        comp, dot, num = text.strip().partition(".")
        if comp not in COMPONENTS:
            raise SiteError(f"unknown site {text!r}; {_VOCAB_HINT}")
        if comp in GLOBAL:
            if dot:
                raise SiteError(f"site {comp!r} has no layer; write '{comp}' instead of {text!r}")
            return cls(comp)
        if not _LAYER.fullmatch(num):             # ASCII digits only: int() refuses '²', '--1'
            raise SiteError(f"site {text!r} needs a layer number, e.g. '{comp}.0' (or '{comp}.*' in parse_sites)")
        return cls(comp, int(num))

    def check(self, n_layers: int) -> Site:
        """Return ``self`` if its layer exists in a model with ``n_layers`` blocks; raise SiteError otherwise."""
        if self.layer is not None and not 0 <= self.layer < n_layers:
            raise SiteError(
                f"layer {self.layer} of site '{self}' is out of range: the model has {n_layers} layers "
                f"(0..{n_layers - 1})"
            )
        return self

    def order_key(self, n_layers: int) -> tuple[int, int]:
        """Sort key in execution order (embed, then per layer resid_pre < z < attn_out < mlp_out < resid_post)."""
        if self.component == "embed":
            return (-1, 0)
        if self.component == "final_norm":
            return (n_layers, 0)
        return (int(self.layer), LAYERED.index(self.component))  # type: ignore[arg-type]

    def __str__(self) -> str:
        return self.component if self.layer is None else f"{self.component}.{self.layer}"


@checked
def parse_sites(spec: str | Site | Iterable[str | Site], n_layers: int) -> list[Site]:
    """Expand a site request into checked :class:`Site` objects in execution order.

    ``spec`` is a site string, a :class:`Site`, or a list of them; ``"resid_post.*"`` (or a bare layered
    component such as ``"resid_post"``) means every layer.
    """
    try:
        n = operator.index(n_layers)
    except TypeError:
        n = 0
    if n < 1:
        raise SiteError(f"n_layers must be a positive int (the model's number of blocks), got {n_layers!r}")
    n_layers = n
    try:
        items = [spec] if isinstance(spec, (str, Site)) else list(spec)
    except TypeError:
        raise SiteError(f"a site request is a site string, a Site or a list of them, got {type(spec).__name__}; "
                        f"{_VOCAB_HINT}") from None
    if not items:
        raise SiteError(f"no sites requested; {_VOCAB_HINT}")
    out: list[Site] = []
    for item in items:
        if isinstance(item, str):
            text = item.strip()
            comp, _, num = text.partition(".")
            if comp in LAYERED and num in ("*", ""):
                out.extend(Site(comp, layer) for layer in range(n_layers))
                continue
            item = Site.parse(text)
        out.append(Site.parse(item).check(n_layers))
    seen: dict[Site, None] = dict.fromkeys(out)
    return sorted(seen, key=lambda s: s.order_key(n_layers))


@checked
def split_heads(x: torch.Tensor, n_heads: int) -> torch.Tensor:
    """``[..., n_heads * d_head]`` → ``[..., n_heads, d_head]`` (a view when ``x`` is contiguous).

    The inverse of the heads-major flattening of ``z.L`` sites: ``split_heads(z, n)[..., h, :]`` is head ``h``.
    Use :meth:`torch.Tensor.flatten` (``t.flatten(-2)``) to go back.
    """
    n = int(n_heads)
    width = int(x.shape[-1]) if x.ndim else 0
    if n <= 0 or width == 0 or width % n:
        raise SiteError(f"cannot split a last dimension of {width} into {n_heads} heads (it must be a positive "
                        "multiple of n_heads)")
    return x.reshape(*x.shape[:-1], n, width // n)
