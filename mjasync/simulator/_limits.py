"""trueai's guards in front of its controllers: the IP rate limiter and per-user caps."""

from __future__ import annotations

from ._config import RateRule, SimulatorConfig
from ._state import IN_PROGRESS, NOT_START, SUBMITTED, SimTask


def path_matches(path: str, pattern: str) -> bool:
    """trueai RateLimitingMiddleware.cs MatchesPath: ``*`` at either end, case-insensitive."""
    path, pattern = path.lower(), pattern.lower()
    core = pattern.strip("*")
    if pattern.startswith("*") and pattern.endswith("*"):
        return core in path
    if pattern.startswith("*"):
        return path.endswith(core)
    if pattern.endswith("*"):
        return path.startswith(core)
    return path == pattern


class IpRateLimiter:
    """trueai RateLimitingMiddleware.cs InvokeAsync for one simulated server.

    IpRateLimiting refuses a request over a rule's count with HTTP 429 and an empty body;
    IpBlackRateLimiting refuses it with 403 and then blocks the IP for BlockTime. Windows
    are fixed buckets (``now // window``), counted per IP and rule; a refused request is not
    counted. Admins pass untouched. Only the per-IP rules are simulated (not /24 and /16).
    Times are simulated seconds, from the event loop's clock divided by ``time_scale``.
    """

    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self._counts: dict[tuple[str, str, str, float, int], int] = {}
        self._blocked_until: dict[str, float] = {}

    @property
    def enabled(self) -> bool:
        """Whether either limiter has rules (the middleware returns at once otherwise)."""
        return bool(self.config.trueai_ip_rate_limit or self.config.trueai_ip_black_rate_limit)

    def _allowed(
        self, kind: str, ip: str, path: str, rules: tuple[RateRule, ...], now: float
    ) -> bool:
        # ApplyRateLimits: each matching rule's count goes up until one is over its limit.
        for pattern, window, limit in rules:
            if not path_matches(path, pattern):
                continue
            key = (kind, ip, pattern, window, int(now // window))
            count = self._counts.get(key, 0)
            if count >= limit:
                return False
            self._counts[key] = count + 1
        return True

    def check(self, ip: str, path: str, now: float, *, admin: bool) -> int | None:
        """The refusing HTTP status for this request, or ``None`` to let it through."""
        if not self.enabled or admin:
            return None
        cfg = self.config
        if cfg.trueai_ip_rate_limit and not self._allowed(
            "rate", ip, path, cfg.trueai_ip_rate_limit, now
        ):
            return 429
        if cfg.trueai_ip_black_rate_limit:
            if self._blocked_until.get(ip, float("-inf")) > now:
                return 403
            if not self._allowed("black", ip, path, cfg.trueai_ip_black_rate_limit, now):
                self._blocked_until[ip] = now + cfg.trueai_black_block_time
                return 403
        return None


def user_cap_error(config: SimulatorConfig, owner: str, tasks: dict[str, SimTask]) -> str | None:
    """trueai SubmitController.cs NewTask: the LogicException a new task of ``owner`` meets.

    A user's CoreSize caps its IN_PROGRESS tasks ("并发数已达上限"), its QueueSize its
    NOT_START/SUBMITTED ones ("队列数已达上限"); guests (by IP) get GuestDefaultCoreSize and
    GuestDefaultQueueSize, which the simulator sets to the same two numbers.
    """
    core, queue = config.trueai_user_core_size, config.trueai_user_queue_size
    if not core and not queue:
        return None
    mine = [t for t in tasks.values() if t.owner == owner]
    if core and sum(t.status == IN_PROGRESS for t in mine) >= core:
        return "并发数已达上限"
    if queue and sum(t.status in {NOT_START, SUBMITTED} for t in mine) >= queue:
        return "队列数已达上限"
    return None
