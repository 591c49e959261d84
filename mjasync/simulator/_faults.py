"""Deciding, per request, which fault (if any) the simulator plays."""

from __future__ import annotations

import collections
import dataclasses
import random
from collections.abc import Mapping
from typing import Any

from ._config import Faults

MJ_FAILURE_REASONS = (
    "Action needed to continue",
    "Invalid parameter",
    "Job action restricted",
    "Request cancelled due to image filters",
    "Internal Error: Failed to process your command",
)

INJECTABLE = frozenset(
    {
        "server_error",
        "rate_limit",
        "drop",
        "malformed",
        "submit_fault_before",
        "submit_fault_after",
        "latency",
        "task_failure",
        "stuck",
        "latency_spike",
        "image_cut",
        "image_truncated",
        "image_wrong_type",
    }
)
# Faults of the image routes (the /sim/images assets, new-api's /mj/image/{id}).
IMAGE_FAULTS = ("image_cut", "image_truncated", "image_wrong_type")


@dataclasses.dataclass(frozen=True)
class Route:
    """A registered route: ``method``, ``template`` (``/mj/task/{id}/fetch``) and short ``name``."""

    method: str
    template: str
    name: str
    creates_task: bool = False
    # Serves a result image: the image faults (Faults.image_*) play here.
    serves_image: bool = False

    @property
    def key(self) -> str:
        """The counter key, ``"GET /mj/task/{id}/fetch"``."""
        return f"{self.method} {self.template}"

    def matches(self, spec: str) -> bool:
        """Whether a user-written route ``spec`` designates this route."""
        spec = spec.strip()
        if " " in spec:
            method, _, template = spec.partition(" ")
            return method.upper() == self.method and template.strip() == self.template
        return spec in {self.template, self.name}


@dataclasses.dataclass
class RequestFaults:
    """The faults chosen for one request.

    ``before`` short-circuits the handler (``server_error``, ``rate_limit``, ``drop``);
    ``after`` lets the handler run, then spoils its answer (``malformed``, ``server_error``
    or ``drop`` for a submit_fault_after). ``before_kind`` / ``after_kind`` name the fault
    kind that chose them (``"submit_fault_before"`` plays as a ``server_error`` or a
    ``drop``), which is what `FaultInjector.counts` counts. ``latency`` is slept before the
    handler and ``spike`` after it, both in real seconds. ``image`` is one of
    `IMAGE_FAULTS`, played on a 200 image answer (``image_variant`` picks the wrong type:
    ``"html"`` or ``"jpeg"``).
    """

    latency: float = 0.0
    before: str | None = None
    before_kind: str | None = None
    after: str | None = None
    after_kind: str | None = None
    status: int = 500
    retry_after: float = 1.0
    spike: float = 0.0
    image: str | None = None
    image_variant: str = "html"
    task_failure: str | None = None
    stuck: bool = False
    # A one-shot "latency" was injected (counted as a fault; the Faults.latency range of
    # every request is not).
    injected_latency: bool = False


@dataclasses.dataclass
class _Pending:
    spec: str
    kind: str
    remaining: int
    params: Mapping[str, Any]


class FaultInjector:
    """Rolls the probabilistic :class:`Faults` and serves one-shot injected faults.

    Injected faults win over probabilistic ones and are consumed in the order they were
    queued, one per matching request.

    ``counts`` holds how many times each fault kind was played, probabilistic and
    injected alike, counted where it takes effect (a planned ``task_failure`` counts
    when a task gets it, an image fault when an image answer is spoiled), so it says
    what the client really met.
    """

    def __init__(self, faults: Faults, rng: random.Random, time_scale: float) -> None:
        self.faults = faults
        self._rng = rng
        self._time_scale = time_scale
        self._pending: list[_Pending] = []
        self.counts: collections.Counter[str] = collections.Counter()

    def played(self, kind: str | None) -> None:
        """Count one played fault of ``kind`` (None: nothing played)."""
        if kind is not None:
            self.counts[kind] += 1

    def inject(self, route: str, kind: str, times: int, params: Mapping[str, Any]) -> None:
        """Queue ``kind`` for the next ``times`` requests to ``route``."""
        if kind not in INJECTABLE:
            raise ValueError(f"unknown fault kind {kind!r}; expected one of {sorted(INJECTABLE)}")
        if times < 1:
            raise ValueError("times must be >= 1")
        if params.get("variant", "html") not in {"html", "jpeg"}:
            raise ValueError('an image_wrong_type variant is "html" or "jpeg"')
        self._pending.append(_Pending(route, kind, times, dict(params)))

    def clear(self) -> None:
        """Forget every injected fault not yet consumed."""
        self._pending.clear()

    def _take_injected(self, route: Route) -> list[_Pending]:
        taken: list[_Pending] = []
        kinds: set[str] = set()
        for pending in self._pending:
            if pending.kind not in kinds and route.matches(pending.spec):
                pending.remaining -= 1
                kinds.add(pending.kind)
                taken.append(pending)
        self._pending = [p for p in self._pending if p.remaining > 0]
        return taken

    def _applies(self, route: Route, default: bool) -> bool:
        routes = self.faults.routes
        if routes is None:
            return default
        return any(route.matches(spec) for spec in routes)

    def plan(self, route: Route, *, probabilistic: bool = True) -> RequestFaults:
        """Decide the faults of one request to ``route``.

        ``probabilistic=False`` (the /sim asset routes) exempts the route from the
        probabilistic faults unless ``Faults.routes`` names it explicitly. The image
        faults play on image routes whatever ``probabilistic`` says (unless
        ``Faults.routes`` is set and leaves the route out).
        """
        plan = RequestFaults(retry_after=self.faults.retry_after)
        for pending in self._take_injected(route):
            self._apply_injected(plan, pending)
        if plan.before or plan.after or plan.image:
            return plan
        f = self.faults
        rng = self._rng
        if route.serves_image and self._applies(route, True) and self._roll_image(plan):
            return plan
        if not self._applies(route, probabilistic):
            return plan
        low, high = f.latency
        if high > 0:
            plan.latency += rng.uniform(low, high) * self._time_scale
        if f.drop and rng.random() < f.drop:
            plan.before = plan.before_kind = "drop"
        elif f.server_error and rng.random() < f.server_error:
            plan.before, plan.status = "server_error", rng.choice((500, 502, 503))
            plan.before_kind = "server_error"
        elif f.rate_limit and rng.random() < f.rate_limit:
            plan.before = plan.before_kind = "rate_limit"
        elif route.creates_task and f.submit_fault_before and rng.random() < f.submit_fault_before:
            plan.before = rng.choice(("server_error", "drop"))
            plan.before_kind = "submit_fault_before"
        elif route.creates_task and f.submit_fault_after and rng.random() < f.submit_fault_after:
            plan.after = rng.choice(("server_error", "drop"))
            plan.after_kind = "submit_fault_after"
        elif f.malformed and rng.random() < f.malformed:
            plan.after = plan.after_kind = "malformed"
        elif f.latency_spike and rng.random() < f.latency_spike:
            plan.spike = f.spike_seconds
        if route.creates_task:
            if f.task_failure and rng.random() < f.task_failure:
                plan.task_failure = rng.choice(MJ_FAILURE_REASONS)
            if f.stuck and rng.random() < f.stuck:
                plan.stuck = True
        return plan

    def _roll_image(self, plan: RequestFaults) -> bool:
        """Roll the image faults into *plan*; True when one was chosen."""
        f = self.faults
        rng = self._rng
        if f.image_cut and rng.random() < f.image_cut:
            plan.image = "image_cut"
        elif f.image_truncated and rng.random() < f.image_truncated:
            plan.image = "image_truncated"
        elif f.image_wrong_type and rng.random() < f.image_wrong_type:
            plan.image = "image_wrong_type"
            plan.image_variant = rng.choice(("html", "jpeg"))
        return plan.image is not None

    def _apply_injected(self, plan: RequestFaults, pending: _Pending) -> None:
        params = pending.params
        kind = pending.kind
        if kind == "latency":
            plan.injected_latency = True
            if "real_seconds" in params:
                plan.latency += float(params["real_seconds"])
            else:
                plan.latency += float(params.get("seconds", 1.0)) * self._time_scale
        elif kind == "latency_spike":
            plan.spike = float(params.get("seconds", self.faults.spike_seconds))
        elif kind in {"server_error", "rate_limit", "drop"}:
            plan.before = plan.before_kind = kind
            plan.status = int(params.get("status", 500))
            plan.retry_after = float(params.get("retry_after", plan.retry_after))
        elif kind == "malformed":
            plan.after = plan.after_kind = "malformed"
        elif kind in {"submit_fault_before", "submit_fault_after"}:
            outcome = "drop" if params.get("drop", False) else "server_error"
            plan.status = int(params.get("status", 500))
            if kind == "submit_fault_before":
                plan.before, plan.before_kind = outcome, kind
            else:
                plan.after, plan.after_kind = outcome, kind
        elif kind in IMAGE_FAULTS:
            plan.image = kind
            plan.image_variant = str(params.get("variant", "html"))
        elif kind == "task_failure":
            plan.task_failure = str(params.get("reason", MJ_FAILURE_REASONS[0]))
        elif kind == "stuck":
            plan.stuck = True

    def notify_plan(self) -> tuple[bool, bool, bool]:
        """For one notifyHook delivery: (drop it, send it twice, delay it past later ones)."""
        f = self.faults
        rng = self._rng
        drop = bool(f.notify_drop) and rng.random() < f.notify_drop
        duplicate = bool(f.notify_duplicate) and rng.random() < f.notify_duplicate
        reorder = bool(f.notify_reorder) and rng.random() < f.notify_reorder
        if drop:
            self.played("notify_drop")
        else:
            # A dropped delivery is neither sent twice nor late: count what really plays.
            self.played("notify_duplicate" if duplicate else None)
            self.played("notify_reorder" if reorder else None)
        return drop, duplicate, reorder
