"""What every submit handler shares: checks the servers make on any submit, the new task,
the answer, and the wrapper that turns a body function into an aiohttp handler.

The handlers (``_submit_routes``, ``_action_routes``) play the upstream proxy (novicezk
OSS, PLUS, trueai); a new-api simulator runs them as its PLUS-like upstream behind the
relay layer of ``_newapi`` (`submit_handler` sends new-api's requests through it).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from ._buttons import NUMBER_EMOJI
from ._context import STATE_KEY, SimulatorState
from ._dialects import (
    action_name,
    spring_error,
    submit_accepted,
    submit_error,
    trueai_result_fail,
    trueai_role,
    trueai_token,
)
from ._engine import Engine
from ._faults import RequestFaults
from ._limits import user_cap_error
from ._newapi import RelayError, decode_request, distribute
from ._parsing import (
    BadRequest,
    LogicError,
    NotAnImage,
    ServerFault,
    Unreadable,
    decode_data_uri,
    read_body,
    text_field,
    trueai_data_url,
)
from ._state import SimTask, now_ms

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
SubmitBody = Callable[[web.Request, dict[str, Any]], web.Response]

# The middleware stores the request's fault plan here, for the task the handler creates.
FAULTS_KEY = web.RequestKey("mjasync_simulator_faults", RequestFaults)
MODE_PREFIXES = {"": None, "/mj-fast": "FAST", "/mj-relax": "RELAX", "/mj-turbo": "TURBO"}
EXT = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp", "image/gif": "gif"}
_ADJECTIVES = ("luminous", "weathered", "tiny", "baroque", "neon", "misty", "golden", "quiet")
_NOUNS = ("lighthouse", "fox", "teapot", "cathedral", "robot", "orchard", "harbor", "violin")
_STYLES = ("watercolor", "35mm photo", "oil painting", "isometric render", "ink sketch")


def state_of(request: web.Request) -> SimulatorState:
    return request.app[STATE_KEY]


def dialect_of(state: SimulatorState) -> str:
    """The dialect of the proxy the handlers play: new-api's upstream is PLUS-like."""
    dialect = state.config.dialect
    return "plus" if dialect == "newapi" else dialect


def image_ok(state: SimulatorState, value: object) -> bool:
    if dialect_of(state) == "trueai":
        try:
            return trueai_data_url(state.config.trueai_upload_base64, value) is not None
        except NotAnImage:
            return False
    # novicezk ConvertUtils.convertBase64Array / DataUrlSerializer: data URIs only.
    return decode_data_uri(value) is not None


def _banned_word(state: SimulatorState, prompt: str) -> str | None:
    for word in state.config.banned_words:
        if re.search(rf"\b{re.escape(word)}\b", prompt, re.IGNORECASE):
            return str(word)
    return None


def check_banned(state: SimulatorState, prompt: str) -> bool:
    """Raise code 24 where the dialect checks at submit; True when trueai should fail later."""
    word = _banned_word(state, prompt)
    if word is None:
        return False
    if dialect_of(state) == "trueai":
        # trueai: the code-24 branch of SubmitController.cs is commented out; the queue
        # worker fails the task instead.
        return True
    # novicezk SubmitController.java imagine(): code 24 with promptEn and bannedWord.
    raise BadRequest(24, "可能包含敏感词", properties={"promptEn": prompt, "bannedWord": word})


def _mode(request: web.Request, body: dict[str, Any], prompt: str) -> str:
    # Priority as in trueai SubmitController.cs NewTaskDoFilter: path prefix >
    # accountFilter.modes > --fast/--relax/--turbo. new-api strips the prefix before
    # forwarding (mjproxy_handler.go getMjRequestPath), so its upstream never sees it.
    if state_of(request).config.dialect != "newapi":
        for prefix, mode in MODE_PREFIXES.items():
            if prefix and request.path.startswith(prefix + "/") and mode:
                return mode
    account_filter = body.get("accountFilter")
    if isinstance(account_filter, dict):
        modes = account_filter.get("modes")
        if (
            isinstance(modes, list)
            and modes
            and str(modes[0]).upper() in {"FAST", "RELAX", "TURBO"}
        ):
            return str(modes[0]).upper()
    for flag in ("relax", "turbo", "fast"):
        if f"--{flag}" in prompt:
            return flag.upper()
    return "FAST"


def store_upload(request: web.Request, data: bytes, mime: str) -> str:
    state = state_of(request)
    name = f"{len(state.uploads) + 1}.{EXT.get(mime, 'bin')}"
    state.uploads[name] = (data, mime)
    return f"{request.url.origin()}/sim/uploads/{name}"


def result(state: SimulatorState, task_id: str) -> str | int:
    # new-api decodes ``result`` into a Go string: its upstream must send strings.
    if state.config.numeric_ids and state.config.dialect != "newapi":
        return int(task_id)
    return task_id


def error_response(state: SimulatorState, exc: BadRequest) -> web.Response:
    return submit_error(
        dialect_of(state),
        exc.code,
        exc.description,
        properties=exc.properties,
        trueai_status=exc.trueai_status,
    )


def queue_full(state: SimulatorState) -> BadRequest:
    if dialect_of(state) == "trueai":
        return BadRequest(9, "提交失败，队列已满，请稍后重试")
    # novicezk DiscordInstanceImpl.submitTask: RejectedExecutionException -> code 23.
    return BadRequest(
        23, "队列已满，请稍后尝试", properties={"discordInstanceId": state.instance_id}
    )


def require_room(state: SimulatorState) -> None:
    """Refuse a new task when the queue is full, the check every submit makes first."""
    if not state.engine.has_room():
        raise queue_full(state)


def not_found(description: str = "关联任务不存在或已失效") -> BadRequest:
    # trueai answers NotFound(...) (HTTP 404) where novicezk answers 200 with code 3.
    return BadRequest(3, description, trueai_status=404)


def choices_for_describe(state: SimulatorState, count: int) -> list[str]:
    rng = state.rng
    return [
        f"a {rng.choice(_ADJECTIVES)} {rng.choice(_NOUNS)} at dusk, {rng.choice(_STYLES)}, "
        f"soft light --ar 1:1"
        for _ in range(count)
    ]


def numbered(choices: list[str], sep: str = "\n\n") -> str:
    return sep.join(f"{NUMBER_EMOJI[i]} {choice}" for i, choice in enumerate(choices))


# -- the new task ---------------------------------------------------------------------------


def _owner(request: web.Request) -> str:
    state = state_of(request)
    if state.config.dialect == "trueai" and trueai_role(state.config, request.headers):
        return trueai_token(request.headers)
    remote = request.remote or ""
    return f"guest:{remote}"


def trueai_new_task_checks(request: web.Request, body: dict[str, Any]) -> None:
    """trueai SubmitController.cs NewTask: the LogicExceptions it throws before a task exists."""
    state = state_of(request)
    if state.config.dialect != "trueai":
        return
    task_state = body.get("state")
    if isinstance(task_state, str) and len(task_state) > 255:
        raise LogicError("State参数过长，最大255字符")
    hook = body.get("notifyHook")
    if isinstance(hook, str) and len(hook) > 2000:
        raise LogicError("NotifyHook参数过长，最大2000字符")
    error = user_cap_error(state.config, _owner(request), state.tasks)
    if error is not None:
        raise LogicError(error)


def new_task(
    request: web.Request,
    body: dict[str, Any],
    *,
    kind: str,
    prompt: str,
    description: str,
    parent: SimTask | None = None,
) -> SimTask:
    state = state_of(request)
    cfg = state.config
    engine: Engine = state.engine
    # new-api has already removed notifyHook unless MjNotifyEnabled (DoMidjourneyHttpRequest).
    hook = (text_field(body, "notifyHook") or None) if cfg.notify else None
    bot_type = text_field(body, "botType").upper()
    bot_type = "NIJI_JOURNEY" if bot_type in {"NIJI_JOURNEY", "NIJI"} else "MID_JOURNEY"
    if parent is not None and not text_field(body, "botType"):
        bot_type = parent.bot_type
    task_state = body.get("state")
    account_filter = body.get("accountFilter")
    task_id = state.ids.task_id(engine.tasks)
    task = SimTask(
        id=task_id,
        kind=kind,
        action=action_name(dialect_of(state), kind, parent.action if parent else None),
        prompt=prompt,
        prompt_en=prompt,
        final_prompt=prompt,
        description=description,
        origin=str(request.url.origin()),
        message_hash=state.ids.message_hash(),
        submit_time=now_ms(),
        state=task_state if isinstance(task_state, str) else None,
        bot_type=bot_type,
        mode=_mode(request, body, prompt),
        notify_hook=hook,
        parent_id=parent.id if parent else None,
        nonce=state.ids.digits(19),
        message_id=state.ids.digits(19),
        instance_id=state.instance_id,
        owner=_owner(request),
        account_filter=account_filter if isinstance(account_filter, dict) else None,
    )
    faults = request.get(FAULTS_KEY)
    if faults is not None:
        task.planned_failure = faults.task_failure
        task.stuck = faults.stuck
        count_task_faults(state, faults)
    return task


def count_task_faults(state: SimulatorState, faults: RequestFaults) -> None:
    """Count the task faults a new (or newly confirmed) task carries."""
    state.faults.played("task_failure" if faults.task_failure else None)
    state.faults.played("stuck" if faults.stuck else None)


def accept(request: web.Request, task: SimTask) -> web.Response:
    state = state_of(request)
    place = state.engine.admit(task)
    if state.config.dialect == "oss":
        # novicezk DiscordInstanceImpl.submitTask: numberOfQueues is the executor's queue
        # size before this task joined it, so the first one to wait still gets code 1.
        place = max(0, place - 1)
    return submit_accepted(
        dialect_of(state),
        result(state, task.id),
        queued=place,
        instance_id=state.instance_id,
    )


def submit_handler(name: str, fn: SubmitBody) -> Handler:
    """Wrap a synchronous submit body: parse JSON, turn exceptions into the dialect's answers.

    On new-api the request goes through the relay first (``_newapi``), and ``fn`` plays
    the upstream.
    """

    async def handler(request: web.Request) -> web.StreamResponse:
        state = state_of(request)
        if state.config.dialect == "newapi":
            return await _relay(request, name, fn)
        try:
            body = await read_body(request)
            return fn(request, body)
        except BadRequest as exc:
            return error_response(state, exc)
        except LogicError as exc:
            # trueai CustomLogicExceptionFilterAttribute.cs: Result.Fail, HTTP 200.
            return trueai_result_fail(exc.message)
        except Unreadable as exc:
            return unreadable_response(request, exc)
        except ServerFault:
            return spring_error(request, 500)

    handler.__name__ = fn.__name__
    return handler


def unreadable_response(request: web.Request, exc: Unreadable) -> web.Response:
    if state_of(request).config.dialect == "trueai":
        # trueai Program.cs InvalidModelStateResponseFactory / CustomActionFilterAttribute:
        # the first model error as Result.Fail, HTTP 200.
        return trueai_result_fail(exc.detail)
    # Spring: HttpMessageNotReadableException -> 400 (PLUS assumed to be the same stack).
    return spring_error(request, 400)


async def _relay(request: web.Request, name: str, fn: SubmitBody) -> web.StreamResponse:
    """new-api: distributor and relay checks, the forwarded body, the rewritten answer."""
    state = state_of(request)
    relay = state.newapi
    raw = await request.read()
    try:
        body = decode_request(request, raw)
        action, index = distribute(request, name, body)
        state.newapi_read()
        prompt = relay.check_submit(name, body, action, index)
    except RelayError as exc:
        return exc.response
    forwarded = relay.forwarded_body(body)
    try:
        upstream = fn(request, forwarded)
    except BadRequest as exc:
        upstream = error_response(state, exc)
    except ServerFault:
        upstream = spring_error(request, 500)
    return relay.answer(name, action, prompt, upstream)
