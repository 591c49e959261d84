"""Configuration of the simulated proxy: dialect, capacity, timing and faults."""

from __future__ import annotations

import dataclasses
import itertools
from typing import Literal, get_args

Dialect = Literal["plus", "trueai", "newapi", "oss"]
DIALECTS: tuple[str, ...] = get_args(Dialect)
# One trueai rate-limit rule: (path pattern such as "*/mj/submit/*", window in simulated
# seconds, most requests allowed per window).
RateRule = tuple[str, float, int]
# Faults fields that are durations, not probabilities.
_SECONDS = frozenset({"retry_after", "spike_seconds"})
# The percentages Midjourney's progress messages show for a grid job, in order, as the
# proxies copy them from the Discord message (the sequence issue #11 records; the real
# steps vary by model and mode). "0%" comes first: the job's message is created before
# rendering starts (novicezk StartAndProgressHandler.java: a CREATE message sets
# IN_PROGRESS and keeps SUBMITTED's "0%"); the rest are the uneven steps MJ edits that
# message with (UPDATE). 100% is the SUCCESS itself, never a progress step.
MIDJOURNEY_PROGRESS: tuple[int, ...] = (0, 15, 31, 46, 62, 78, 93)


@dataclasses.dataclass(frozen=True)
class Faults:
    """Seeded, probabilistic faults applied per request (or per task) by the simulator.

    Probabilities are in ``[0, 1]`` and are rolled independently for every request, with
    the simulator's seeded RNG, so a run with the same seed and the same request order
    misbehaves the same way.

    * ``server_error``: answer HTTP 500, 502 or 503 (empty body) instead of handling.
    * ``rate_limit``: answer HTTP 429 with ``Retry-After: <retry_after>`` and an empty body.
      ``retry_after`` is sent as written (real seconds; it is *not* scaled by ``time_scale``,
      so tests pick a small value).
    * ``drop``: abort the TCP connection without any response.
    * ``latency``: ``(min, max)`` *simulated* seconds slept before every request, scaled by
      ``time_scale`` like every other duration of the simulator.
    * ``malformed``: answer 200 with the real body truncated into invalid JSON.
    * ``task_failure``: an accepted task ends in FAILURE with a Midjourney-like English reason.
    * ``stuck``: an accepted task stays IN_PROGRESS forever (and keeps its slot).
    * ``submit_fault_before``: a submit fails (500 or dropped) before any task is created.
    * ``submit_fault_after``: a submit creates its task, then answers 500 or drops the
      connection, so the client cannot know the task exists.
    * ``latency_spike``: the handler runs (a submit creates its task), then the answer is
      held for ``spike_seconds`` *real* seconds (not scaled: it is meant to outlast a
      client's request timeout, which is wall-clock time), so the client gives up on a
      request the server carried out.
    * ``spike_seconds``: how long a latency spike holds the answer, in real seconds.
    * ``notify_drop`` / ``notify_duplicate`` / ``notify_reorder``: a notifyHook delivery is
      skipped, sent twice, or delayed so that it lands after later ones.
    * ``image_cut``: an image answer sends its headers (the whole ``Content-Length``) and
      half the bytes, then the connection drops (a CDN connection lost mid-download).
    * ``image_truncated``: an image answer is a complete HTTP 200 whose body is the first
      half of the PNG (a CDN serving a partly cached file); only the image's own end
      marker tells.
    * ``image_wrong_type``: an image answer is a 200 HTML page (``text/html``, a CDN's
      "link expired" page), or the PNG labelled ``image/jpeg``.
    * ``routes``: when set, only requests to these routes get the probabilistic faults; items
      may be ``"POST /mj/submit/imagine"``, ``"/mj/submit/imagine"`` or a short name such as
      ``"imagine"`` (speed-mode prefixes are ignored).

    The image faults play on the image routes (``/sim/images/{name}``, new-api's
    ``/mj/image/{id}``) only, and there even without ``routes`` naming them; the other
    faults never reach the /sim routes unless ``routes`` names them. At most one fault of
    ``drop``, ``server_error``, ``rate_limit``, the submit faults, ``malformed`` and
    ``latency_spike`` plays per request, rolled in that order.
    """

    server_error: float = 0.0
    rate_limit: float = 0.0
    retry_after: float = 1.0
    drop: float = 0.0
    latency: tuple[float, float] = (0.0, 0.0)
    malformed: float = 0.0
    task_failure: float = 0.0
    stuck: float = 0.0
    submit_fault_before: float = 0.0
    submit_fault_after: float = 0.0
    latency_spike: float = 0.0
    spike_seconds: float = 5.0
    notify_drop: float = 0.0
    notify_duplicate: float = 0.0
    notify_reorder: float = 0.0
    image_cut: float = 0.0
    image_truncated: float = 0.0
    image_wrong_type: float = 0.0
    routes: frozenset[str] | None = None

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.name in _SECONDS:
                if not isinstance(value, int | float) or not value >= 0:
                    raise ValueError(f"Faults.{field.name} must be >= 0 seconds")
            elif isinstance(value, int | float) and not 0 <= value <= 1:
                raise ValueError(f"Faults.{field.name} must be a probability in [0, 1]")
        low, high = self.latency
        if low < 0 or high < low:
            raise ValueError("Faults.latency must be (min, max) with 0 <= min <= max")
        routes: object = self.routes  # callers pass sets or lists too
        if isinstance(routes, set | list | tuple):
            object.__setattr__(self, "routes", frozenset(routes))


@dataclasses.dataclass(frozen=True)
class SimulatorConfig:
    """Everything that shapes one simulated proxy server.

    Durations are *simulated* seconds; the server sleeps ``duration * time_scale`` real
    seconds, so tests use ``time_scale`` around 0.001-0.01.

    ``disabled_routes`` holds route names (``"list-by-condition"``), templates
    (``"/mj/task/list-by-condition"``) or ``"METHOD /template"`` keys; those routes are not
    registered and answer what the dialect answers for a route it lacks (Spring's 404 JSON
    on oss/plus, an empty 404 on trueai, new-api's 200 HTML page).

    ``numeric_ids`` sends task ids in submit answers as JSON numbers (some aggregators'
    docs show them so); new-api ignores it: its DTO carries ids as strings.

    Server settings each dialect's operators can change (defaults are the servers'):

    * ``oss_task_exists``: old novicezk (before commit b146e94, March 2024): a repeated
      ``/submit/change`` UPSCALE of the same image answers code 21 "任务已存在" with the
      existing task, instead of starting another upscale.
    * new-api (``setting/*.go``): ``newapi_notify`` (MjNotifyEnabled), ``newapi_account_filter``
      (MjAccountFilterEnabled), ``newapi_mode_clear`` (MjModeClearEnabled: strip
      ``--fast/--relax/--turbo`` from prompts), ``newapi_action_check_success``
      (MjActionCheckSuccessEnabled), ``newapi_forward_url`` (MjForwardUrlEnabled: image URLs
      point at new-api's own ``/mj/image/{id}``), ``newapi_sync_interval`` (simulated seconds
      between new-api's polls of its upstream; its copy of every task lags by up to that).
    * trueai: ``trueai_user_keys`` are extra, non-admin keys (``api_key`` is the admin's; with
      no ``api_key`` every caller is a guest, and only an admin may cancel);
      ``trueai_upload_base64`` (EnableUserCustomUploadBase64), ``trueai_fill_official_cdn``
      (EnableFillOfficialCdn: ``videoUrl``/``videoUrls``/``imageUrls`` are filled),
      ``trueai_user_core_size`` / ``trueai_user_queue_size`` (a user's CoreSize/QueueSize,
      0 = unlimited: "并发数已达上限" / "队列数已达上限"), ``trueai_ip_rate_limit`` and
      ``trueai_ip_black_rate_limit`` (IpRateLimiting / IpBlackRateLimiting rules, each
      ``(path pattern, window simulated seconds, max requests)``: HTTP 429 / 403 with an
      empty body) and ``trueai_black_block_time`` (simulated seconds an IP stays blocked).
    """

    dialect: Dialect = "plus"
    api_key: str | None = None
    slots: int = 3
    queue_size: int = 10
    time_scale: float = 1.0
    queue_delay: float = 1.0
    start_delay: float = 1.0
    progress_steps: int = 4
    step_delay: float = 1.0
    seed_delay: float = 1.0
    duration_jitter: float = 0.0
    step_jitter: float = 0.0
    progress_percents: tuple[int, ...] = ()
    remix: bool = False
    banned_words: tuple[str, ...] = ("gore",)
    image_size: int = 64
    disabled_routes: frozenset[str] = frozenset()
    notify: bool = True
    newapi_notify: bool = False
    seed: int = 0
    faults: Faults = dataclasses.field(default_factory=Faults)
    numeric_ids: bool = False
    oss_task_exists: bool = False
    newapi_account_filter: bool = False
    newapi_mode_clear: bool = False
    newapi_action_check_success: bool = True
    newapi_forward_url: bool = True
    newapi_sync_interval: float = 15.0
    trueai_user_keys: frozenset[str] = frozenset()
    trueai_upload_base64: bool = True
    trueai_fill_official_cdn: bool = False
    trueai_user_core_size: int = 0
    trueai_user_queue_size: int = 0
    trueai_ip_rate_limit: tuple[RateRule, ...] = ()
    trueai_ip_black_rate_limit: tuple[RateRule, ...] = ()
    trueai_black_block_time: float = 86400.0

    def __post_init__(self) -> None:
        if self.dialect not in DIALECTS:
            raise ValueError(f"dialect must be one of {DIALECTS}, not {self.dialect!r}")
        if self.slots < 1 or self.queue_size < 0:
            raise ValueError("slots must be >= 1 and queue_size >= 0")
        if self.time_scale < 0 or self.progress_steps < 0:
            raise ValueError("time_scale and progress_steps must be >= 0")
        for name in ("queue_delay", "start_delay", "step_delay"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0 simulated seconds")
        for name in ("duration_jitter", "step_jitter"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"{name} must be in [0, 1)")
        percents: object = self.progress_percents
        if isinstance(percents, list | range):
            percents = tuple(percents)
            object.__setattr__(self, "progress_percents", percents)
        if not isinstance(percents, tuple) or not all(
            type(p) is int and 0 <= p <= 99 for p in percents
        ):
            raise ValueError("progress_percents must be whole percentages in 0..99")
        if any(b <= a for a, b in itertools.pairwise(percents)):
            raise ValueError("progress_percents must increase")
        if not 1 <= self.image_size <= 4096:
            raise ValueError("image_size must be between 1 and 4096")
        # Accept any iterable from callers (a set literal, a list) but keep the frozen types.
        disabled: object = self.disabled_routes
        if isinstance(disabled, set | list | tuple):
            object.__setattr__(self, "disabled_routes", frozenset(disabled))
        banned: object = self.banned_words
        if isinstance(banned, list | set | frozenset):
            object.__setattr__(self, "banned_words", tuple(banned))
        keys: object = self.trueai_user_keys
        if isinstance(keys, set | list | tuple):
            object.__setattr__(self, "trueai_user_keys", frozenset(keys))
        if self.newapi_sync_interval < 0 or self.trueai_black_block_time < 0:
            raise ValueError("newapi_sync_interval and trueai_black_block_time must be >= 0")
        if self.trueai_user_core_size < 0 or self.trueai_user_queue_size < 0:
            raise ValueError("trueai_user_core_size and trueai_user_queue_size must be >= 0")
        for name in ("trueai_ip_rate_limit", "trueai_ip_black_rate_limit"):
            rules = tuple(tuple(rule) for rule in getattr(self, name))
            for rule in rules:
                if (
                    len(rule) != 3
                    or not isinstance(rule[0], str)
                    or not rule[1] > 0
                    or not isinstance(rule[2], int)
                    or rule[2] < 0
                ):
                    raise ValueError(
                        f"{name} items are (path pattern, window seconds > 0, max requests >= 0)"
                    )
            object.__setattr__(self, name, rules)

    @property
    def steps(self) -> int:
        """How many IN_PROGRESS steps a job reports."""
        return len(self.progress_percents) if self.progress_percents else self.progress_steps

    def step_percent(self, step: int) -> int:
        """The progress shown at IN_PROGRESS step ``step`` (1-based)."""
        if self.progress_percents:
            return self.progress_percents[step - 1]
        return step * 100 // (self.progress_steps + 1)

    def scaled(self, simulated_seconds: float) -> float:
        """Real seconds to wait for ``simulated_seconds`` of simulated time."""
        return max(0.0, simulated_seconds * self.time_scale)
