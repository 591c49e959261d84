"""The submit handlers (/mj/submit/*, /mj/insight-face/swap): what each server checks and
the tasks it creates.

They play the upstream proxy (novicezk OSS, PLUS, trueai); a new-api simulator runs them as
its PLUS-like upstream behind the relay layer of ``_newapi``.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from ._buttons import ALWAYS_MODAL, NUMBER_EMOJI, REMIX_MODAL, parse_custom_id
from ._context import STATE_KEY, SimulatorState
from ._dialects import (
    action_name,
    json_response,
    spring_error,
    submit_accepted,
    submit_error,
    submit_modal,
    trueai_reroll_allowed,
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
    is_url,
    java_enum,
    java_integer,
    java_string,
    read_body,
    text_field,
    trueai_data_url,
)
from ._state import CANCEL, MODAL, SUCCESS, SimTask, now_ms

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
SubmitBody = Callable[[web.Request, dict[str, Any]], web.Response]

# The middleware stores the request's fault plan here, for the task the handler creates.
FAULTS_KEY = web.RequestKey("mjasync_simulator_faults", RequestFaults)
MODE_PREFIXES = {"": None, "/mj-fast": "FAST", "/mj-relax": "RELAX", "/mj-turbo": "TURBO"}
_ZOOM = re.compile(r"--zoom\s+(?P<x>\d+(?:\.\d+)?)")
_EXT = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp", "image/gif": "gif"}
_ADJECTIVES = ("luminous", "weathered", "tiny", "baroque", "neon", "misty", "golden", "quiet")
_NOUNS = ("lighthouse", "fox", "teapot", "cathedral", "robot", "orchard", "harbor", "violin")
_STYLES = ("watercolor", "35mm photo", "oil painting", "isometric render", "ink sketch")
# novicezk enums/TaskAction.java, in declaration order (Jackson also takes the ordinal).
_OSS_ACTIONS = ("IMAGINE", "UPSCALE", "VARIATION", "REROLL", "DESCRIBE", "BLEND")
_OSS_CHANGE_KINDS = {"UPSCALE": "upsample", "VARIATION": "variation", "REROLL": "reroll"}
# trueai SubmitController.cs Action(): the customIds it accepts, by prefix (or substring).
_TRUEAI_ACTION_PREFIXES = (
    "MJ::JOB::upsample::",
    "MJ::JOB::video_virtual_upscale",
    "MJ::JOB::variation::",
    "MJ::JOB::reroll::",
    "MJ::JOB::high_variation::",
    "MJ::JOB::low_variation::",
    "MJ::Outpaint::",
    "MJ::JOB::pan_",
    "MJ::JOB::upsample_",
    "MJ::CustomZoom::",
    "MJ::Inpaint::",
    "MJ::JOB::animate_",
    "MJ::Job::PicReader",
)
# What Discord answers an interaction naming a component the message lacks (inferred:
# Discord's error 50035, not read in the proxies' code, which only relay its message).
DISCORD_REFUSAL = "Invalid Form Body"


def state_of(request: web.Request) -> SimulatorState:
    return request.app[STATE_KEY]


def dialect_of(state: SimulatorState) -> str:
    """The dialect of the proxy the handlers play: new-api's upstream is PLUS-like."""
    dialect = state.config.dialect
    return "plus" if dialect == "newapi" else dialect


def _image_ok(state: SimulatorState, value: object) -> bool:
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


def _check_banned(state: SimulatorState, prompt: str) -> bool:
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


def _store_upload(request: web.Request, data: bytes, mime: str) -> str:
    state = state_of(request)
    name = f"{len(state.uploads) + 1}.{_EXT.get(mime, 'bin')}"
    state.uploads[name] = (data, mime)
    return f"{request.url.origin()}/sim/uploads/{name}"


def _result(state: SimulatorState, task_id: str) -> str | int:
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


def _queue_full(state: SimulatorState) -> BadRequest:
    if dialect_of(state) == "trueai":
        return BadRequest(9, "提交失败，队列已满，请稍后重试")
    # novicezk DiscordInstanceImpl.submitTask: RejectedExecutionException -> code 23.
    return BadRequest(
        23, "队列已满，请稍后尝试", properties={"discordInstanceId": state.instance_id}
    )


def not_found(description: str = "关联任务不存在或已失效") -> BadRequest:
    # trueai answers NotFound(...) (HTTP 404) where novicezk answers 200 with code 3.
    return BadRequest(3, description, trueai_status=404)


def _choices_for_describe(state: SimulatorState, count: int) -> list[str]:
    rng = state.rng
    return [
        f"a {rng.choice(_ADJECTIVES)} {rng.choice(_NOUNS)} at dusk, {rng.choice(_STYLES)}, "
        f"soft light --ar 1:1"
        for _ in range(count)
    ]


def _numbered(choices: list[str], sep: str = "\n\n") -> str:
    return sep.join(f"{NUMBER_EMOJI[i]} {choice}" for i, choice in enumerate(choices))


# -- task creation ---------------------------------------------------------------------------


def _owner(request: web.Request) -> str:
    state = state_of(request)
    if state.config.dialect == "trueai" and trueai_role(state.config, request.headers):
        return trueai_token(request.headers)
    remote = request.remote or ""
    return f"guest:{remote}"


def _trueai_new_task_checks(request: web.Request, body: dict[str, Any]) -> None:
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


def _new_task(
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
        _count_task_faults(state, faults)
    return task


def _count_task_faults(state: SimulatorState, faults: RequestFaults) -> None:
    """Count the task faults a new (or newly confirmed) task carries."""
    state.faults.played("task_failure" if faults.task_failure else None)
    state.faults.played("stuck" if faults.stuck else None)


def _accept(request: web.Request, task: SimTask) -> web.Response:
    state = state_of(request)
    place = state.engine.admit(task)
    if state.config.dialect == "oss":
        # novicezk DiscordInstanceImpl.submitTask: numberOfQueues is the executor's queue
        # size before this task joined it, so the first one to wait still gets code 1.
        place = max(0, place - 1)
    return submit_accepted(
        dialect_of(state),
        _result(state, task.id),
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


# -- submit routes ---------------------------------------------------------------------------


def imagine(request: web.Request, body: dict[str, Any]) -> web.Response:
    """POST /mj/submit/imagine."""
    state = state_of(request)
    dialect = dialect_of(state)
    prompt = text_field(body, "prompt")
    if not prompt:
        raise BadRequest(4, "prompt不能为空")
    images = body.get("base64Array") or []
    if not isinstance(images, list):
        raise BadRequest(4, "base64格式错误")
    if dialect == "trueai":
        # trueai SubmitController.cs Imagine: uploads off -> "禁止上传" whatever the images
        # are; NewTask's LogicExceptions are caught and answered as code 4 here.
        if not state.config.trueai_upload_base64 and images:
            raise BadRequest(4, "禁止上传")
        try:
            _trueai_new_task_checks(request, body)
        except LogicError as exc:
            raise BadRequest(4, exc.message) from exc
        banned = _check_banned(state, prompt)
        if not all(_image_ok(state, i) for i in images):
            raise BadRequest(4, "base64格式错误")
    else:
        # novicezk SubmitController.java imagine(): the banned-word check comes before the
        # images are decoded.
        banned = _check_banned(state, prompt)
        if not all(_image_ok(state, i) for i in images):
            raise BadRequest(4, "base64格式错误")
    if not state.engine.has_room():
        raise _queue_full(state)
    task = _new_task(request, body, kind="imagine", prompt=prompt, description=f"/imagine {prompt}")
    task.banned = banned
    return _accept(request, task)


def blend(request: web.Request, body: dict[str, Any]) -> web.Response:
    """POST /mj/submit/blend."""
    state = state_of(request)
    dialect = dialect_of(state)
    images = body.get("base64Array")
    if not isinstance(images, list) or not 2 <= len(images) <= 5:
        # novicezk: "base64List参数错误"; trueai SubmitController.cs Blend: its own text.
        text = "图片参数错误，2~5张图片" if dialect == "trueai" else "base64List参数错误"
        raise BadRequest(4, text)
    # A missing field keeps the DTO's default; an explicit null is refused.
    dimensions = body.get("dimensions", "SQUARE")
    if dimensions is None:
        raise BadRequest(4, "dimensions参数错误")
    if dimensions not in {"PORTRAIT", "SQUARE", "LANDSCAPE"}:
        # Jackson / System.Text.Json cannot bind an unknown enum name.
        raise Unreadable(
            f"The JSON value could not be converted to BlendDimensions: {dimensions!r}"
        )
    if not all(_image_ok(state, i) for i in images):
        raise BadRequest(4, "base64格式错误")
    _trueai_new_task_checks(request, body)
    if not state.engine.has_room():
        raise _queue_full(state)
    task = _new_task(request, body, kind="blend", prompt="", description="")
    task.description = f"/blend {task.id} {len(images)}"
    task.extra_properties["dimensions"] = dimensions
    return _accept(request, task)


def describe(request: web.Request, body: dict[str, Any]) -> web.Response:
    """POST /mj/submit/describe."""
    state = state_of(request)
    dialect = dialect_of(state)
    raw = body.get("base64")
    link = text_field(body, "link")
    if dialect == "trueai":
        # trueai SubmitController.cs Describe: base64 or link; a link must be http(s).
        if not (isinstance(raw, str) and raw.strip()) and not link:
            raise BadRequest(4, "base64或link不能为空")
        if link and not re.match(r"^https?://.+", link):
            raise BadRequest(4, "链接格式错误")
        image_url = link
        if isinstance(raw, str) and raw.strip():
            if not state.config.trueai_upload_base64:
                raise BadRequest(4, "禁止上传")
            try:
                parsed = trueai_data_url(True, raw)
            except NotAnImage as exc:
                raise BadRequest(4, "base64格式错误") from exc
            if isinstance(parsed, str):
                image_url = parsed
            elif parsed is not None:
                image_url = _store_upload(request, *parsed)
        _trueai_new_task_checks(request, body)
        description = "/describe"
    else:
        # novicezk SubmitController.java describe().
        if not (isinstance(raw, str) and raw.strip()):
            raise BadRequest(4, "base64不能为空")
        decoded = decode_data_uri(raw)
        if decoded is None:
            raise BadRequest(4, "base64格式错误")
        image_url = _store_upload(request, *decoded)
        description = ""
    if not state.engine.has_room():
        raise _queue_full(state)
    task = _new_task(request, body, kind="describe", prompt="", description=description)
    if not description:
        # novicezk: "/describe <taskId>.<suffix of the image's mime type>".
        decoded = decode_data_uri(raw)
        suffix = _EXT.get(decoded[1], "png") if decoded else "png"
        task.description = f"/describe {task.id}.{suffix}"
    task.image_url = image_url
    task.choices = _choices_for_describe(state, 4)
    task.result_text = _numbered(task.choices)
    return _accept(request, task)


def shorten(request: web.Request, body: dict[str, Any]) -> web.Response:
    """POST /mj/submit/shorten."""
    state = state_of(request)
    prompt = text_field(body, "prompt")
    # trueai SubmitController.cs Shorten checks nothing before NewTask.
    if not prompt and dialect_of(state) != "trueai":
        raise BadRequest(4, "prompt不能为空")
    _trueai_new_task_checks(request, body)
    if not state.engine.has_room():
        raise _queue_full(state)
    task = _new_task(request, body, kind="shorten", prompt=prompt, description=f"/shorten {prompt}")
    words = prompt.split()
    task.choices = [" ".join(words[: max(1, len(words) * (5 - i) // 5)]) for i in range(5)]
    tokens = ", ".join(words[:5])
    task.result_text = f"**Important tokens**\n{tokens}\n\n**Shortened prompts**\n" + _numbered(
        task.choices, "\n\n"
    )
    return _accept(request, task)


def _remix_modal(state: SimulatorState, kind: str, body: dict[str, Any]) -> bool:
    if kind in ALWAYS_MODAL:
        return True
    if kind not in REMIX_MODAL:
        return False
    if dialect_of(state) == "trueai" and body.get("enableRemix") is True:
        if not state.config.remix:
            raise BadRequest(4, "当前账号不支持 remix，请开启 remix 功能")
        return True
    return bool(state.config.remix)


def _trueai_action(custom_id: str, parent: SimTask) -> str:
    """trueai SubmitController.cs Action(): the action of the task a customId starts."""
    if custom_id.startswith(("MJ::JOB::upsample::", "MJ::JOB::video_virtual_upscale")):
        return "UPSCALE"
    if custom_id.startswith(
        ("MJ::JOB::variation::", "MJ::JOB::high_variation::", "MJ::JOB::low_variation::")
    ):
        return "VARIATION"
    if custom_id.startswith("MJ::JOB::reroll::"):
        return "IMAGINE" if parent.action == "UPSCALE" else parent.action
    if custom_id.startswith(("MJ::Outpaint::", "MJ::CustomZoom::")):
        return "ZOOM"
    if custom_id.startswith("MJ::JOB::pan_"):
        return "PAN"
    if custom_id.startswith("MJ::JOB::upsample_"):
        return "UPSCALE_HD"
    if custom_id.startswith("MJ::Inpaint::"):
        return "VARIATION"
    if custom_id.startswith("MJ::JOB::animate_"):
        return "VIDEO"
    if "MJ::Picread::Retry" in custom_id:
        return "DESCRIBE"
    return "IMAGINE"  # MJ::Job::PicReader


def action(request: web.Request, body: dict[str, Any]) -> web.Response:
    """POST /mj/submit/action: press one of a SUCCESS task's buttons."""
    state = state_of(request)
    dialect = dialect_of(state)
    engine: Engine = state.engine
    task_id = str(body.get("taskId") or "").strip()
    custom_id = text_field(body, "customId")
    if not task_id or not custom_id:
        raise BadRequest(4, "参数错误" if dialect == "trueai" else "taskId 和 customId 不能为空")
    parsed = parse_custom_id(custom_id)
    parent = engine.tasks.get(task_id)
    if parent is None:
        raise not_found()
    if parent.status != SUCCESS:
        raise BadRequest(4, "关联任务状态错误")
    button = parent.button(custom_id)
    if dialect == "trueai":
        # trueai SubmitController.cs Action(): NewTask, then the customId whitelist (no
        # PromptAnalyzer, no BOOKMARK, no manual video), then the reroll rule.
        _trueai_new_task_checks(request, body)
        allowed = custom_id.startswith(_TRUEAI_ACTION_PREFIXES) or (
            "MJ::Picread::Retry" in custom_id
        )
        if not allowed:
            raise BadRequest(4, "未知的 Action 类型")
        if custom_id.startswith("MJ::JOB::reroll::") and not trueai_reroll_allowed(parent.action):
            raise BadRequest(4, "该任务不支持重新生成")
        if button is None or parsed is None:
            # Allowed, but the parent's message has no such component: Discord refuses
            # the interaction and the task fails as it starts.
            if not engine.has_room():
                raise _queue_full(state)
            task = _new_task(
                request,
                body,
                kind=parsed.kind if parsed else "upsample",
                prompt=parent.prompt,
                description="Submit success",
                parent=parent,
            )
            task.action = _trueai_action(custom_id, parent)
            task.custom_id = custom_id
            task.rejected_by_discord = DISCORD_REFUSAL
            return _accept(request, task)
    elif button is None or parsed is None:
        raise BadRequest(4, f"未知的 Action 类型: {custom_id}")
    assert button is not None
    assert parsed is not None
    kind = parsed.kind

    if kind == "pic_reader_all":
        # trueai TaskService.cs SubmitAction "MJ::Job::PicReader::all": up to four IMAGINE
        # tasks, their ids comma-joined, description "成功".
        count = len(parent.choices)
        if not engine.has_room(count):
            raise _queue_full(state)
        ids: list[str] = []
        base_state = body.get("state") if isinstance(body.get("state"), str) else parent.state
        for n, choice in enumerate(parent.choices, start=1):
            child = _new_task(
                request,
                body,
                kind="pic_reader",
                prompt=choice,
                description=f"/imagine {choice}",
                parent=parent,
            )
            child.state = f"{base_state}::{n}" if base_state else None
            child.index = n
            engine.admit(child)
            ids.append(child.id)
        button.style = 3
        return json_response(
            {
                "code": 1,
                "description": "成功",
                "result": ",".join(ids),
                "properties": {"discordInstanceId": state.instance_id},
            }
        )

    if _remix_modal(state, kind, body):
        suggested = parent.prompt
        if kind in {"pic_reader", "prompt_analyzer"}:
            index = parsed.index or 1
            if not 1 <= index <= len(parent.choices):
                raise BadRequest(4, f"未知的 Action 类型: {custom_id}")
            suggested = parent.choices[index - 1]
        task = _new_task(request, body, kind=kind, prompt=suggested, description="", parent=parent)
        task.description = "Waiting for window confirm"
        task.custom_id = custom_id
        task.index = parsed.index
        engine.add_modal(task)
        button.style = 3
        return submit_modal(dialect, _result(state, task.id), suggested, state.instance_id)

    if not engine.has_room():
        raise _queue_full(state)
    task = _new_task(
        request, body, kind=kind, prompt=parent.prompt, description="Submit success", parent=parent
    )
    task.custom_id = custom_id
    task.index = parsed.index
    task.final_prompt = parent.final_prompt or parent.prompt
    if kind == "picread_retry":
        task.image_url = parent.image_url
        task.choices = _choices_for_describe(state, 4)
        task.result_text = _numbered(task.choices)
    if parsed.zoom is not None:
        task.extra_properties["zoom"] = parsed.zoom
    button.style = 3
    return _accept(request, task)


def _change(
    request: web.Request,
    body: dict[str, Any],
    task_id: str | None,
    change_action: str | None,
    index: int | None,
) -> web.Response:
    """novicezk SubmitController.java change(), which simple-change also ends in."""
    state = state_of(request)
    engine: Engine = state.engine
    if not (task_id or "").strip():
        raise BadRequest(4, "taskId不能为空")
    if change_action not in _OSS_CHANGE_KINDS:
        raise BadRequest(4, "action参数错误")
    assert task_id is not None
    suffix = "R" if change_action == "REROLL" else f"{change_action[0]}{index}"
    description = f"/up {task_id} {suffix.replace('None', 'null')}"
    if state.config.oss_task_exists and change_action == "UPSCALE":
        # novicezk before b146e94 (v2.6.2 and older): any task whose description contains
        # this one is "the same upscale", whatever its status.
        for existing in engine.tasks.values():
            if description in existing.description:
                return json_response(
                    {
                        "code": 21,
                        "description": "任务已存在",
                        "result": existing.id,
                        "properties": {"status": existing.status, "imageUrl": existing.image_url},
                    }
                )
    parent = engine.tasks.get(task_id)
    if parent is None:
        raise BadRequest(3, "关联任务不存在或已失效")
    if parent.status != SUCCESS:
        raise BadRequest(4, "关联任务状态错误")
    if parent.action not in {"IMAGINE", "VARIATION", "REROLL", "BLEND"}:
        raise BadRequest(4, "关联任务不允许执行变化")
    if change_action != "REROLL" and index is None:
        # submitUpscale/submitVariation take an int: unboxing the missing index throws.
        raise ServerFault
    if not engine.has_room():
        raise _queue_full(state)
    task = _new_task(
        request,
        body,
        kind=_OSS_CHANGE_KINDS[change_action],
        prompt=parent.prompt,
        description=description,
        parent=parent,
    )
    task.action = change_action
    task.prompt_en = parent.prompt_en
    task.final_prompt = parent.final_prompt
    task.index = index
    task.extra_properties["progressMessageId"] = parent.message_id
    task.extra_properties["referencedMessageId"] = parent.message_id
    if index is not None and change_action != "REROLL" and not 1 <= index <= 4:
        # change() never checks the index: Discord refuses a button that does not exist.
        task.rejected_by_discord = DISCORD_REFUSAL
    return _accept(request, task)


def change(request: web.Request, body: dict[str, Any]) -> web.Response:
    """POST /mj/submit/change {taskId, action: UPSCALE|VARIATION|REROLL, index}."""
    task_id = java_string(body, "taskId")
    change_action = java_enum(body, "action", _OSS_ACTIONS)
    index = java_integer(body, "index")
    return _change(request, body, task_id, change_action, index)


def simple_change(request: web.Request, body: dict[str, Any]) -> web.Response:
    """POST /mj/submit/simple-change {content: "<taskId> U2"}.

    novicezk ConvertUtils.convertChangeParams: exactly two space-separated parts (hutool
    split keeps empty parts); 'u…'/'v…' with the second character a digit 1..4, or "r".
    """
    content = java_string(body, "content")
    parts = content.split(" ") if content is not None else []
    if len(parts) != 2:
        raise BadRequest(4, "content参数错误")
    text = parts[1].lower()
    if not text:
        raise ServerFault  # action.charAt(0) on "" throws outside the try block
    index: int | None = None
    if text[0] == "u":
        change_action = "UPSCALE"
    elif text[0] == "v":
        change_action = "VARIATION"
    elif text == "r":
        change_action = "REROLL"
    else:
        raise BadRequest(4, "content参数错误")
    if change_action != "REROLL":
        digit = text[1:2]
        if not digit.isdigit() or not 1 <= int(digit) <= 4:
            raise BadRequest(4, "content参数错误")
        index = int(digit)
    return _change(request, body, parts[0], change_action, index)


def modal(request: web.Request, body: dict[str, Any]) -> web.Response:
    """POST /mj/submit/modal: confirm a MODAL task with a prompt (and mask)."""
    state = state_of(request)
    dialect = dialect_of(state)
    engine: Engine = state.engine
    task_id = str(body.get("taskId") or "").strip()
    if not task_id:
        raise BadRequest(4, "参数错误" if dialect == "trueai" else "taskId不能为空")
    task = engine.tasks.get(task_id)
    if task is None:
        # trueai SubmitController.cs Modal: NotFound + code 3.
        raise not_found("关联任务不存在或已失效" if dialect == "trueai" else "任务不存在")
    if task.status != MODAL:
        raise BadRequest(4, f"任务状态错误: {task.status} is not MODAL")
    prompt = text_field(body, "prompt")
    if task.kind == "custom_zoom":
        match = _ZOOM.search(prompt)
        if match is None or not 1 <= float(match["x"]) <= 2:
            raise BadRequest(4, "Custom Zoom needs '--zoom X' with 1 <= X <= 2 in the prompt")
    mask = body.get("maskBase64")
    if task.kind == "inpaint":
        decoded = decode_data_uri(mask)
        if decoded is None or decoded[1] != "image/png":
            raise BadRequest(4, "Vary (Region) needs maskBase64 as a data:image/png;base64 URI")
    final = prompt or task.prompt
    if not final and task.kind != "inpaint":
        raise BadRequest(4, "prompt不能为空")
    banned = _check_banned(state, final) if final else False
    if not engine.has_room():
        raise _queue_full(state)
    if isinstance(body.get("state"), str):
        task.state = body["state"]
    if dialect == "plus":
        # PLUS answers with a new id: the modal task is closed (CANCEL) and a fresh one runs.
        fresh = dataclasses.replace(
            task,
            id=state.ids.task_id(engine.tasks),
            message_hash=state.ids.message_hash(),
            submit_time=now_ms(),
            buttons=[],
            extra_properties=dict(task.extra_properties),
            choices=list(task.choices),
        )
        engine.cancel(task, status=CANCEL, reason=None)
        task = fresh
    task.prompt = task.prompt_en = task.final_prompt = final
    task.description = "Submit success"
    task.mask = mask if isinstance(mask, str) else None
    task.banned = banned
    faults = request.get(FAULTS_KEY)
    if faults is not None:
        task.planned_failure = task.planned_failure or faults.task_failure
        task.stuck = task.stuck or faults.stuck
        _count_task_faults(state, faults)
    place = engine.confirm_modal(task)
    return submit_accepted(
        dialect, _result(state, task.id), queued=place, instance_id=state.instance_id
    )


def upload(request: web.Request, body: dict[str, Any]) -> web.Response:
    """POST /mj/submit/upload-discord-images: no task, just URLs."""
    state = state_of(request)
    dialect = dialect_of(state)
    if dialect == "trueai" and not state.config.trueai_upload_base64:
        # trueai SubmitController.cs ImagineDiscordImages.
        raise BadRequest(4, "禁止上传")
    images = body.get("base64Array")
    if not isinstance(images, list) or not images:
        raise BadRequest(4, "base64 参数错误" if dialect == "trueai" else "base64Array不能为空")
    urls: list[str] = []
    for image in images:
        decoded = decode_data_uri(image)
        if decoded is not None:
            urls.append(_store_upload(request, *decoded))
        elif dialect == "trueai" and is_url(image):
            urls.append(str(image))
        else:
            raise BadRequest(4, "base64格式错误")
    return json_response({"code": 1, "description": "提交成功", "result": urls})


def swap_face(request: web.Request, body: dict[str, Any]) -> web.Response:
    """POST /mj/insight-face/swap."""
    state = state_of(request)
    if dialect_of(state) == "trueai":
        return _trueai_swap_face(request, body)
    source, target = body.get("sourceBase64"), body.get("targetBase64")
    if not (_image_ok(state, source) and _image_ok(state, target)):
        raise BadRequest(4, "sourceBase64 和 targetBase64 必须是图片")
    if source == target:
        raise BadRequest(4, "源图和目标图不能相同")
    if not state.engine.has_room():
        raise _queue_full(state)
    task = _new_task(request, body, kind="swap_face", prompt="", description="/swap")
    task.bot_type = "INSIGHT_FACE"
    return _accept(request, task)


def _trueai_swap_face(request: web.Request, body: dict[str, Any]) -> web.Response:
    """trueai InsightFaceController.cs FaceSwap + FaceSwapService.cs SubmitTask."""
    state = state_of(request)
    source_b64, target_b64 = text_field(body, "sourceBase64"), text_field(body, "targetBase64")
    source_url, target_url = text_field(body, "sourceUrl"), text_field(body, "targetUrl")
    if not source_b64 and not source_url:
        raise BadRequest(4, "人脸图片不能为空")
    if not target_b64 and not target_url:
        raise BadRequest(4, "目标图片不能为空")
    if (source_b64 and source_b64 == target_b64) or (source_url and source_url == target_url):
        raise BadRequest(4, "人脸图片和目标图片不能相同")
    for b64, url, name in ((source_b64, source_url, "人脸"), (target_b64, target_url, "目标")):
        if b64:
            try:
                parsed = trueai_data_url(state.config.trueai_upload_base64, b64)
            except NotAnImage as exc:
                raise BadRequest(4, f"{name}图片格式错误") from exc
            if isinstance(parsed, tuple) and not parsed[0]:
                raise BadRequest(4, f"{name}图片大小超过最大限制")
        elif not is_url(url):
            raise BadRequest(4, f"{name}图片URL格式错误")
    if not state.engine.has_room():
        raise BadRequest(9, "提交失败，队列已满，请稍后重试")
    task = _new_task(request, body, kind="swap_face", prompt="", description="/swap")
    task.bot_type = "INSIGHT_FACE"
    return _accept(request, task)


def edits(request: web.Request, body: dict[str, Any]) -> web.Response:
    """POST /mj/submit/edits and /mj/submit/edit (trueai {prompt, image}; 147ai base64Array)."""
    state = state_of(request)
    prompt = text_field(body, "prompt")
    image = body.get("image")
    if dialect_of(state) == "trueai":
        # trueai SubmitController.cs Edits: uploads off refuses even an image URL.
        if not (isinstance(image, str) and image.strip()) or not prompt:
            raise BadRequest(4, "image或prompt不能为空")
        if not state.config.trueai_upload_base64:
            raise BadRequest(4, "禁止上传")
        if not _image_ok(state, image.strip()):
            raise BadRequest(4, "base64格式错误")
        _trueai_new_task_checks(request, body)
    else:
        if not prompt:
            raise BadRequest(4, "prompt不能为空")
        if image is None and isinstance(body.get("base64Array"), list) and body["base64Array"]:
            image = body["base64Array"][0]
        if not _image_ok(state, image):
            raise BadRequest(4, "image不能为空或格式错误")
    banned = _check_banned(state, prompt)
    if not state.engine.has_room():
        raise _queue_full(state)
    task = _new_task(request, body, kind="edit", prompt=prompt, description=f"/edit {prompt}")
    task.banned = banned
    return _accept(request, task)


def video(request: web.Request, body: dict[str, Any]) -> web.Response:
    """POST /mj/submit/video (new video, or ``action: extend`` of a video task)."""
    state = state_of(request)
    dialect = dialect_of(state)
    engine: Engine = state.engine
    prompt = text_field(body, "prompt")
    parent: SimTask | None = None
    extend = str(body.get("action") or "").lower() == "extend"
    if dialect == "trueai":
        # trueai SubmitController.cs Video: prompt, the two images (http URLs stay URLs),
        # NewTask, then the parent of an extension; no motion or index checks.
        if not prompt:
            raise BadRequest(4, "Prompt 不能为空")
        for key in ("image", "endImage"):
            try:
                trueai_data_url(state.config.trueai_upload_base64, body.get(key))
            except NotAnImage as exc:
                raise BadRequest(4, "base64格式错误") from exc
        _trueai_new_task_checks(request, body)
        parent_id = text_field(body, "taskId")
        if parent_id:
            if body.get("action") != "extend":
                raise BadRequest(4, "任务类型错误")
            parent = engine.tasks.get(parent_id)
            if parent is None:
                raise not_found()
            if parent.status != SUCCESS:
                raise BadRequest(4, "关联任务状态错误")
        elif extend:
            # TaskService.cs SubmitVideo: an extension without a parent.
            raise BadRequest(3, "目标任务不存在")
    else:
        if extend:
            parent = engine.tasks.get(str(body.get("taskId") or ""))
            if parent is None:
                raise not_found()
            if parent.status != SUCCESS or parent.kind != "video":
                raise BadRequest(4, "关联任务状态错误")
            index = body.get("index")
            if not isinstance(index, int) or not 0 <= index <= 3:
                raise BadRequest(4, "index 必须是 0-3")
            prompt = prompt or parent.prompt
        elif not prompt:
            raise BadRequest(4, "prompt不能为空")
    motion = str(body.get("motion") or "low").lower()
    banned = _check_banned(state, prompt)
    if not engine.has_room():
        raise _queue_full(state)
    task = _new_task(
        request, body, kind="video", prompt=prompt, description=f"/video {prompt}", parent=parent
    )
    task.banned = banned
    task.extra_properties["motion"] = motion
    return _accept(request, task)
