"""The Ray engine: capture, probe layer sweeps and patching sweeps as tasks on a Ray cluster (``engine="ray"``).

Problem: one process captures one checkpoint at a time on one device. A series of large checkpoints, or a million
prompts, wants every GPU of a cluster; and on a cluster, workers die (preempted nodes, OOM kills) and so do drivers.

Mechanism: this module is the engine's plumbing, shared by the three sweeps that use it; each sweep owns its own
tasks (``mixprobe.capture.distributed``, ``mixprobe.probes.batched``, ``mixprobe.mixture.studies``,
``mixprobe.patching.sweep``). :func:`resolve_engine` turns ``engine="local" | "ray" | RayEngine(...)`` into an
engine (``None`` means the single-process path, the default); :func:`connect` joins the cluster at
``RayEngine.address`` (``ray.init(address=...)``), or starts a local one (``ray.init()``: every core of this machine)
when no address is given and this process is not connected yet; :func:`run_tasks` submits one Ray task per
payload — ``num_cpus`` and ``num_gpus`` each (``num_gpus=None``: one GPU per task where the cluster has GPUs, none
otherwise), retried up to ``max_retries`` times when its worker dies — shows a progress bar on the driver and
returns the results in payload order. A task that raises a :class:`~mixprobe.errors.MixprobeError` re-raises it
on the driver, unchanged; any other failure that outlives its retries is a :class:`~mixprobe.errors.DistributedError`.

Example::

    from mixprobe.capture import capture
    capture("runs/s0", prompts, "resid_post.*", store="/shared/acts", engine="ray")               # local cluster
    capture("runs/s0", prompts, "resid_post.*", store="/shared/acts", engine="ray", address="head:6379")
    capture("runs/s0", prompts, "resid_post.*", store="/shared/acts",
            engine=RayEngine(num_gpus=2, chunk=64), model_kwargs={"device_map": "auto"})             # 2 GPUs per task

Constraints: Ray is an optional dependency (``pip install 'mixprobe[ray]'``) imported only when a Ray engine runs;
``import mixprobe`` never loads it. Workers must see the same paths as the driver (checkpoints, the store: a
shared filesystem) and the same mixprobe. See docs/distributed.md.
"""
from __future__ import annotations

import functools
import math
import socket
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from mixprobe._check import checked
from mixprobe.errors import DataError, DistributedError, MixprobeError

ENGINES = ("local", "ray")
INSTALL = "pip install 'mixprobe[ray]'"


@dataclass(frozen=True)
class RayEngine:
    """How to run on Ray.

    ``address``: the cluster (``"head-node:6379"``, ``"auto"`` for the cluster this machine belongs to, or
    ``"ray://head:10001"`` for Ray Client); ``None`` joins the cluster this process is connected to, or starts a
    local one. ``num_cpus`` / ``num_gpus``: resources of each task (``num_gpus=None``: 1 where the cluster has GPUs,
    else 0; 2 or more with ``model_kwargs={"device_map": "auto"}`` for a model larger than one GPU).
    ``max_retries``: how often Ray reruns a task whose worker died. ``chunk``: work items per task (capture: shards
    of one checkpoint; sweeps: sites); ``None`` spreads the work over the cluster's free slots. ``init_kwargs``:
    extra ``ray.init`` arguments when a local cluster is started (e.g. ``{"num_cpus": 2}``). ``progress``: the
    driver's progress bar.
    """

    address: str | None = None
    num_cpus: float = 1.0
    num_gpus: float | None = None
    max_retries: int = 3
    chunk: int | None = None
    init_kwargs: Mapping[str, Any] = field(default_factory=dict)
    progress: bool = True

    def __post_init__(self) -> None:
        if self.num_cpus < 0 or (self.num_gpus is not None and self.num_gpus < 0):
            raise DataError(f"num_cpus and num_gpus must be >= 0, got {self.num_cpus} and {self.num_gpus}")
        if self.max_retries < 0:
            raise DataError(f"max_retries must be >= 0, got {self.max_retries}")
        if self.chunk is not None and self.chunk < 1:
            raise DataError(f"chunk must be >= 1 (or None), got {self.chunk}")


@checked
def resolve_engine(engine: str | RayEngine | None = "local", address: str | None = None) -> RayEngine | None:
    """``None`` for the single-process path (``"local"``), else the :class:`RayEngine` to run on."""
    if engine is None or (isinstance(engine, str) and engine == "local"):
        if address:
            raise DataError(f"address={address!r} is for the Ray engine; pass engine='ray' (--engine ray) with it")
        return None
    if isinstance(engine, str) and engine == "ray":
        return RayEngine(address=address)
    if isinstance(engine, RayEngine):
        return replace(engine, address=address) if address else engine
    raise DataError(f"engine must be one of {ENGINES} (or a RayEngine), got {engine!r}")


@checked
def ray_module() -> Any:
    """The ``ray`` package, or a DistributedError that says how to install it."""
    try:
        import ray
    except ImportError as e:
        raise DistributedError(f"engine='ray' needs Ray, which is not installed here ({e}); install it with: "
                               f"{INSTALL}") from None
    return ray


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail fast, with a hint, when nothing listens at ``host:port`` (``ray.init`` would retry for a minute)."""
    if address in ("auto", "local"):
        return
    hostport = address.split("://", 1)[-1].rstrip("/")
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise DistributedError(f"cannot read Ray address {address!r}; write host:port (e.g. head-node:6379, as "
                               "`ray start --head` prints it), ray://host:10001, or auto")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as e:
        raise DistributedError(f"no Ray cluster answers at {address} ({e}); start one there with `ray start --head` "
                               "(it prints the address), or leave the address out to start a local cluster") from None


@checked
def connect(engine: RayEngine) -> Any:
    """``ray``, connected: to the cluster this process already joined, else to ``engine.address`` (checked to
    answer first, whether joined or not), else to a new local cluster (``ray.init()`` with ``engine.init_kwargs``;
    no dashboard; worker logs are not forwarded to the driver)."""
    ray = ray_module()
    if engine.address:
        _check_reachable(engine.address)
    if ray.is_initialized():
        return ray
    kw: dict[str, Any] = {"log_to_driver": False}
    if engine.address:
        try:
            ray.init(address=engine.address, **kw)
        except (ConnectionError, RuntimeError, ValueError, TimeoutError) as e:
            raise DistributedError(f"cannot join the Ray cluster at {engine.address}: {str(e)[:300]}") from None
    else:
        ray.init(**{"include_dashboard": False, **kw, **dict(engine.init_kwargs)})
    return ray


@checked
def gpus_per_task(ray: Any, engine: RayEngine) -> float:
    """GPUs each task asks for: ``engine.num_gpus``, or 1 where the cluster has GPUs and 0 where it has none."""
    if engine.num_gpus is not None:
        return float(engine.num_gpus)
    return 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0


@checked
def slots(ray: Any, engine: RayEngine) -> int:
    """How many tasks the cluster runs at once with this engine's resources per task."""
    res = ray.cluster_resources()
    gpus = gpus_per_task(ray, engine)
    if gpus > 0:
        return max(1, int(res.get("GPU", 0) // gpus))
    return max(1, int(res.get("CPU", 1) // engine.num_cpus)) if engine.num_cpus > 0 else max(1, int(res.get("CPU", 1)))


@checked
def split(items: Sequence[Any], n_parts: int | None = None, *, size: int | None = None) -> list[list[Any]]:
    """Consecutive chunks of ``items``: ``size`` each, or ``n_parts`` of near-equal size (never empty)."""
    items = list(items)
    if not items:
        return []
    if size is None:
        size = math.ceil(len(items) / max(1, min(n_parts or 1, len(items))))
    return [items[i:i + size] for i in range(0, len(items), size)]


@functools.cache
def _remote(ray: Any, fn: Callable) -> Any:
    return ray.remote(fn)


def _result(ray: Any, ref: Any, engine: RayEngine) -> Any:
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as e:
        cause = getattr(e, "cause", None)
        if isinstance(cause, MixprobeError):
            raise cause from None
        what = f"{type(cause).__name__}: {cause}" if cause is not None else str(e)
        raise DistributedError(f"a Ray task failed ({what[:800]}); finished work is kept: fix the cause and run "
                               "again to resume") from e
    except ray.exceptions.RayError as e:
        raise DistributedError(f"a Ray task failed after {engine.max_retries} retries ({type(e).__name__}: "
                               f"{str(e)[:300]}); finished work is kept: run again to resume") from e


@checked
def run_tasks(ray: Any, engine: RayEngine, fn: Callable, args: Iterable[tuple], *, desc: str, total: int | None = None,
              unit: str = "task", initial: int = 0, on_result: Callable[[int, Any], int] | None = None,
              poll: Callable[[], int] | None = None, poll_s: float = 0.5) -> list[Any]:
    """Run ``fn(*a)`` as a Ray task for every ``a`` in ``args``; return the results in order.

    The progress bar counts tasks, or ``total`` units from ``initial``: ``on_result(i, result)`` (called as each
    result arrives) and ``poll()`` (called every ``poll_s`` seconds while tasks run) return the units done since.
    On any error the tasks still pending are cancelled, and waited for (up to 30 s) before the error is raised.
    """
    from tqdm.auto import tqdm

    remote = _remote(ray, fn).options(num_cpus=engine.num_cpus, num_gpus=gpus_per_task(ray, engine),
                                      max_retries=engine.max_retries)
    refs = [remote.remote(*a) for a in args]
    index = {r: i for i, r in enumerate(refs)}
    out: list[Any] = [None] * len(refs)
    pending = list(refs)
    bar = tqdm(total=len(refs) if total is None else total, initial=initial, desc=desc,
               unit=unit if total is not None else "task", disable=not engine.progress)
    try:
        while pending:
            ready, pending = ray.wait(pending, num_returns=1, timeout=poll_s)
            for r in ready:
                i = index[r]
                out[i] = _result(ray, r, engine)
                bar.update(on_result(i, out[i]) if on_result is not None else (1 if total is None else 0))
            if poll is not None:
                bar.update(poll())
    except BaseException:
        for r in pending:
            ray.cancel(r, force=True)
        if pending:          # cancelling is asynchronous: let the cancelled tasks end before the error reaches the
            ray.wait(pending, num_returns=len(pending), timeout=30)   # caller (a rerun must not race them)
        raise
    finally:
        bar.close()
    return out
