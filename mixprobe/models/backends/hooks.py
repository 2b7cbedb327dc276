"""The fast core: read and edit sites with plain PyTorch hooks on the underlying HF modules.

Problem: every backend (HF, PEFT, TransformerLens bridge, nnsight) ends up calling the same HF modules, so one
hook implementation on those modules serves them all — and it is the cheapest one (no cache dictionary, no
tracing). Mechanism: :class:`~mixprobe.models.layout.Layout` finds the embedding, the decoder blocks, their
attention / MLP sub-modules and the final norm (one table for every architecture). A site maps to one module and
a hook kind:

=================  ===========================  =====================
site               module                       hook
=================  ===========================  =====================
``embed``          token embedding              forward (output)
``resid_pre.L``    block ``L``                  forward pre-hook (input ``hidden_states``)
``z.L``            block ``L`` attention's      forward pre-hook (input: every head's output, flattened
                   output projection (o_proj)   heads-major ``[batch, seq, n_heads * d_head]``)
``attn_out.L``     block ``L`` attention        forward (output, first element of a tuple)
``mlp_out.L``      block ``L`` MLP              forward (output)
``resid_post.L``   block ``L``                  forward (output)
``final_norm``     final norm                   forward (output)
=================  ===========================  =====================

:func:`reading` keeps only the requested positions of each site (``gather`` in the hook, so a full
``[batch, seq, d]`` activation never outlives the forward) and can stop the forward right after the last
requested site (:class:`StopForward`), skipping the rest of the network and the unembedding. :func:`editing`
passes each site's full activation through a callable and substitutes the result.

Example:
    >>> import torch
    >>> from mixprobe.organisms.configs import tiny_model
    >>> from mixprobe.models.sites import Site
    >>> m = tiny_model("gpt2", vocab_size=16, seed=0)
    >>> lay = Layout.of(m)
    >>> lay.path(Site("attn_out", 1)), lay.path(Site("embed"))
    ('transformer.h.1.attn', 'transformer.wte')
    >>> got = {}
    >>> with reading(lay, [Site("resid_post", 0)], None, got, stop=True):
    ...     ran_to_end = run_until_stop(m, input_ids=torch.tensor([[1, 5, 6]]))
    >>> ran_to_end, tuple(got["resid_post.0"].shape)
    (False, (1, 3, 64))

Constraints: transformers 5 blocks return a tensor, attention modules a tuple — both are handled, never
``output[0]`` blindly. Hooks are always removed when the context exits, also on exceptions.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import torch

from mixprobe._check import checked
from mixprobe.errors import SiteError
from mixprobe.models.layout import Layout, hidden_of, with_hidden
from mixprobe.models.positions import gather_positions
from mixprobe.models.sites import Site

Edit = Callable[[torch.Tensor], "torch.Tensor | None"]


class StopForward(Exception):
    """Raised by a reading hook after the last requested site: the rest of the forward is not needed."""


_INPUT_KWARGS = ("hidden_states", "input", "x")  # keyword names of a module's main input (block, Linear, Conv1D)


def _pre_hidden(args: tuple, kwargs: dict) -> torch.Tensor:
    """The main input of a module call: the first positional tensor, else ``hidden_states`` / ``input`` / ``x``."""
    if args and isinstance(args[0], torch.Tensor):
        return args[0]
    for key in _INPUT_KWARGS:
        h = kwargs.get(key)
        if isinstance(h, torch.Tensor):
            return h
    raise SiteError(f"cannot find the input tensor (positional, or one of {_INPUT_KWARGS}) in the call of a "
                    "decoder block or attention output projection")


def _pre_replace(args: tuple, kwargs: dict, h: torch.Tensor) -> tuple[tuple, dict]:
    if args and isinstance(args[0], torch.Tensor):
        return (h, *args[1:]), kwargs
    key = next(k for k in _INPUT_KWARGS if isinstance(kwargs.get(k), torch.Tensor))
    return args, {**kwargs, key: h}


@checked
class Reader:
    """Reading hooks registered once and reused for many forwards (what :func:`reading` and capture use).

    ``with Reader(layout, sites, stop=True, transform=f) as rd: acts = rd.run(model, index, **inputs)`` — each
    ``run`` sets the position index, runs one forward (stopped after the last site when ``stop``) and returns
    ``{site: gather(activation, index)}`` (through ``transform(name, tensor)`` when given).
    """

    def __init__(self, layout: Layout, sites: Sequence[Site], *, stop: bool = False,
                 transform: Callable[[str, torch.Tensor], torch.Tensor] | None = None) -> None:
        self.layout = layout
        self.sites = sorted(sites, key=lambda s: s.order_key(layout.n_layers))
        self.names = [str(s) for s in self.sites]
        self.stop = stop
        self.transform = transform
        self.index: torch.Tensor | None = None
        self.out: dict[str, torch.Tensor] = {}
        self._handles: list[Any] = []
        self._last = self.names[-1] if self.names else None

    def _keep(self, name: str, h: torch.Tensor) -> None:
        v = gather_positions(h.detach(), self.index)
        self.out[name] = self.transform(name, v) if self.transform is not None else v
        if self.stop and name == self._last:
            raise StopForward

    def __enter__(self) -> Reader:
        try:
            for site, name in zip(self.sites, self.names):
                mod = self.layout.module(site)
                if Layout.is_input(site):
                    def pre(module, args, kwargs, _n=name):
                        self._keep(_n, _pre_hidden(args, kwargs))
                    self._handles.append(mod.register_forward_pre_hook(pre, with_kwargs=True))
                else:
                    def post(module, args, output, _n=name):
                        self._keep(_n, hidden_of(output))
                    self._handles.append(mod.register_forward_hook(post))
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def run(self, model: Callable[..., Any], index: torch.Tensor | None, **inputs: Any) -> dict[str, torch.Tensor]:
        """One forward; the kept activations by site name (missing sites raise SiteError)."""
        self.index, self.out = index, {}
        run_until_stop(model, **inputs)
        out = self.out
        if len(out) != len(self.names):  # never a silent empty result
            missing = [n for n in self.names if n not in out]
            raise SiteError(f"sites {missing} did not fire during the forward of {type(model).__name__}")
        return out


@checked
@contextmanager
def reading(
    layout: Layout,
    sites: Sequence[Site],
    index: torch.Tensor | None,
    out: dict[str, torch.Tensor],
    *,
    stop: bool = False,
    transform: Callable[[str, torch.Tensor], torch.Tensor] | None = None,
) -> Iterator[None]:
    """Hooks that put ``gather(site activation, index)`` into ``out[str(site)]`` during forwards in the block.

    ``index`` is ``[batch, n_pos]`` absolute positions or ``None`` (all). With ``stop=True`` the hook of the last
    site (in execution order) raises :class:`StopForward`; run the model with :func:`run_until_stop`.
    ``transform(name, tensor)`` post-processes each kept tensor (e.g. an asynchronous copy to the host).
    """
    rd = Reader(layout, sites, stop=stop, transform=transform)
    rd.index, rd.out = index, out
    with rd:
        yield


def _checked(site: Site, fn: Edit, h: torch.Tensor) -> torch.Tensor | None:
    new = fn(h)
    if new is None:
        return None
    if not isinstance(new, torch.Tensor) or new.shape != h.shape:
        got = tuple(new.shape) if isinstance(new, torch.Tensor) else type(new).__name__
        raise SiteError(f"the edit of site '{site}' returned {got}; it must return a tensor of shape "
                        f"{tuple(h.shape)} (or None to keep the activation)")
    return new.to(h.dtype)


@checked
@contextmanager
def editing(layout: Layout, edits: Mapping[Site, Edit]) -> Iterator[None]:
    """Hooks that pass each site's full activation ``[batch, seq, d]`` through its edit during the block."""
    handles = []
    try:
        for site, fn in edits.items():
            mod = layout.module(site)
            if Layout.is_input(site):
                def pre(module, args, kwargs, _s=site, _f=fn):
                    new = _checked(_s, _f, _pre_hidden(args, kwargs))
                    return None if new is None else _pre_replace(args, kwargs, new)
                handles.append(mod.register_forward_pre_hook(pre, with_kwargs=True))
            else:
                def post(module, args, output, _s=site, _f=fn):
                    new = _checked(_s, _f, hidden_of(output))
                    return None if new is None else with_hidden(output, new)
                handles.append(mod.register_forward_hook(post))
        yield
    finally:
        for h in handles:
            h.remove()


@checked
def run_until_stop(model: Callable[..., Any], **inputs: Any) -> bool:
    """Call ``model(**inputs)``; return False if a reading hook stopped it early (:class:`StopForward`)."""
    try:
        model(**inputs)
    except StopForward:
        return False
    return True
