"""Request handlers for the /mj API and the /sim asset routes, and the per-dialect route table."""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import hashlib
import json
import re
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from ._buttons import ALWAYS_MODAL, NUMBER_EMOJI, REMIX_MODAL, parse_custom_id
from ._context import STATE_KEY, SimulatorState
from ._dialects import (
    action_name,
    displays,
    json_response,
    submit_accepted,
    submit_error,
    submit_modal,
    task_json,
    unknown_task,
)
from ._engine import Engine
from ._faults import RequestFaults, Route
from ._png import fake_mp4, render_image
from ._state import CANCEL, FAILURE, MODAL, SUCCESS, SimTask, now_ms

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# The middleware stores the request's fault plan here, for the task the handler creates.
FAULTS_KEY = web.RequestKey("mjasync_simulator_faults", RequestFaults)
MODE_PREFIXES = {"": None, "/mj-fast": "FAST", "/mj-relax": "RELAX", "/mj-turbo": "TURBO"}
_DATA_URI = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+);base64,(?P<data>.*)$", re.DOTALL)
_ZOOM = re.compile(r"--zoom\s+(?P<x>\d+(?:\.\d+)?)")
_EXT = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp", "image/gif": "gif"}
_ADJECTIVES = ("luminous", "weathered", "tiny", "baroque", "neon", "misty", "golden", "quiet")
_NOUNS = ("lighthouse", "fox", "teapot", "cathedral", "robot", "orchard", "harbor", "violin")
_STYLES = ("watercolor", "35mm photo", "oil painting", "isometric render", "ink sketch")


class BadRequest(Exception):
    """A submit that is rejected with a business code (4, 3, 24...)."""

    def __init__(
        self,
        code: int,
        description: str,
        *,
        properties: dict[str, Any] | None = None,
        trueai_status: int = 200,
    ) -> None:
        super().__init__(description)
        self.code = code
        self.description = description
        self.properties = properties
        self.trueai_status = trueai_status


def _state(request: web.Request) -> SimulatorState:
    return request.app[STATE_KEY]


# -- request parsing helpers -----------------------------------------------------------------


async def _body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise BadRequest(4, "请求体不是合法的 JSON") from exc
    if not isinstance(data, dict):
        raise BadRequest(4, "请求体必须是 JSON 对象")
    return data


def _text(body: dict[str, Any], key: str) -> str:
    value = body.get(key)
    return value.strip() if isinstance(value, str) else ""


def _decode_data_uri(value: object) -> tuple[bytes, str] | None:
    if not isinstance(value, str):
        return None
    match = _DATA_URI.match(value.strip())
    if match is None:
        return None
    try:
        data = base64.b64decode(match["data"], validate=True)
    except (binascii.Error, ValueError):
        return None
    return data, match["mime"].lower()


def _is_url(value: object) -> bool:
    return isinstance(value, str) and value.startswith(("http://", "https://"))


def _image_ok(dialect: str, value: object) -> bool:
    # trueai also takes http(s) URLs and bare base64; the others want a data URI.
    if _decode_data_uri(value) is not None:
        return True
    return dialect == "trueai" and (_is_url(value) or (isinstance(value, str) and bool(value)))


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
    if state.config.dialect == "trueai":
        return True
    raise BadRequest(24, "可能包含敏感词", properties={"promptEn": prompt, "bannedWord": word})


def _mode(request: web.Request, body: dict[str, Any], prompt: str) -> str:
    # Priority as in trueai: path prefix > accountFilter.modes > --fast/--relax/--turbo.
    for prefix, mode in MODE_PREFIXES.items():
        if prefix and request.path.startswith(prefix + "/") and mode:
            return mode
    account_filter = body.get("accountFilter")
    if isinstance(account_filter, dict):
        modes = account_filter.get("modes")
        if (
            isinstance(modes, list)
            and modes
            and str(modes[0]).upper()
            in {
                "FAST",
                "RELAX",
                "TURBO",
            }
        ):
            return str(modes[0]).upper()
    for flag in ("relax", "turbo", "fast"):
        if f"--{flag}" in prompt:
            return flag.upper()
    return "FAST"


def _store_upload(request: web.Request, data: bytes, mime: str) -> str:
    state = _state(request)
    name = f"{len(state.uploads) + 1}.{_EXT.get(mime, 'bin')}"
    state.uploads[name] = (data, mime)
    return f"{request.url.origin()}/sim/uploads/{name}"


def _result(state: SimulatorState, task_id: str) -> str | int:
    return int(task_id) if state.config.numeric_ids else task_id


def _error(state: SimulatorState, exc: BadRequest) -> web.Response:
    return submit_error(
        state.config.dialect,
        exc.code,
        exc.description,
        properties=exc.properties,
        trueai_status=exc.trueai_status,
    )


def _queue_full(state: SimulatorState) -> BadRequest:
    if state.config.dialect == "trueai":
        return BadRequest(9, "提交失败，队列已满，请稍后重试")
    return BadRequest(23, "队列已满，请稍后尝试")


def _not_found(description: str = "关联任务不存在或已失效") -> BadRequest:
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


def _new_task(
    request: web.Request,
    body: dict[str, Any],
    *,
    kind: str,
    prompt: str,
    description: str,
    parent: SimTask | None = None,
) -> SimTask:
    state = _state(request)
    cfg = state.config
    engine: Engine = state.engine
    hook = _text(body, "notifyHook") or None
    if not (cfg.notify and (cfg.dialect != "newapi" or cfg.newapi_notify)):
        hook = None
    bot_type = _text(body, "botType").upper()
    bot_type = "NIJI_JOURNEY" if bot_type in {"NIJI_JOURNEY", "NIJI"} else "MID_JOURNEY"
    if parent is not None and not _text(body, "botType"):
        bot_type = parent.bot_type
    task_state = body.get("state")
    task_id = state.ids.task_id(engine.tasks)
    task = SimTask(
        id=task_id,
        kind=kind,
        action=action_name(cfg.dialect, kind, parent.action if parent else None),
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
    )
    faults = request.get(FAULTS_KEY)
    if faults is not None:
        task.planned_failure = faults.task_failure
        task.stuck = faults.stuck
    return task


def _accept(request: web.Request, task: SimTask) -> web.Response:
    state = _state(request)
    place = state.engine.admit(task)
    return submit_accepted(
        state.config.dialect,
        _result(state, task.id),
        queued=place,
        instance_id=state.instance_id,
    )


def _submit(fn: Callable[[web.Request, dict[str, Any]], web.Response]) -> Handler:
    """Wrap a synchronous submit body: parse JSON, turn BadRequest into the dialect's error."""

    async def handler(request: web.Request) -> web.StreamResponse:
        state = _state(request)
        try:
            body = await _body(request)
            return fn(request, body)
        except BadRequest as exc:
            return _error(state, exc)

    handler.__name__ = fn.__name__
    return handler


# -- submit routes ---------------------------------------------------------------------------


def imagine(request: web.Request, body: dict[str, Any]) -> web.Response:
    """POST /mj/submit/imagine."""
    state = _state(request)
    prompt = _text(body, "prompt")
    if not prompt:
        raise BadRequest(4, "prompt不能为空")
    images = body.get("base64Array") or []
    if not isinstance(images, list) or not all(_image_ok(state.config.dialect, i) for i in images):
        raise BadRequest(4, "base64格式错误")
    banned = _check_banned(state, prompt)
    if not state.engine.has_room():
        raise _queue_full(state)
    task = _new_task(request, body, kind="imagine", prompt=prompt, description=f"/imagine {prompt}")
    task.banned = banned
    return _accept(request, task)


def blend(request: web.Request, body: dict[str, Any]) -> web.Response:
    """POST /mj/submit/blend."""
    state = _state(request)
    images = body.get("base64Array")
    if not isinstance(images, list) or not 2 <= len(images) <= 5:
        raise BadRequest(4, "base64List参数错误: 需要 2-5 张图片")
    if not all(_image_ok(state.config.dialect, i) for i in images):
        raise BadRequest(4, "base64格式错误")
    dimensions = body.get("dimensions", "SQUARE")
    if dimensions not in {"PORTRAIT", "SQUARE", "LANDSCAPE"}:
        raise BadRequest(4, "dimensions参数错误")
    if not state.engine.has_room():
        raise _queue_full(state)
    task = _new_task(request, body, kind="blend", prompt="", description="")
    task.description = f"/blend {task.id} {len(images)}"
    task.extra_properties["dimensions"] = dimensions
    return _accept(request, task)


def describe(request: web.Request, body: dict[str, Any]) -> web.Response:
    """POST /mj/submit/describe."""
    state = _state(request)
    decoded = _decode_data_uri(body.get("base64"))
    link = _text(body, "link")
    if decoded is not None:
        upload = _store_upload(request, *decoded)
    elif state.config.dialect == "trueai" and _is_url(link):
        upload = link
    else:
        raise BadRequest(4, "base64格式错误")
    if not state.engine.has_room():
        raise _queue_full(state)
    task = _new_task(request, body, kind="describe", prompt="", description="")
    task.description = f"/describe {task.id}"
    task.image_url = upload
    task.choices = _choices_for_describe(state, 4)
    task.result_text = _numbered(task.choices)
    return _accept(request, task)


def shorten(request: web.Request, body: dict[str, Any]) -> web.Response:
    """POST /mj/submit/shorten."""
    state = _state(request)
    prompt = _text(body, "prompt")
    if not prompt:
        raise BadRequest(4, "prompt不能为空")
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
    if state.config.dialect == "trueai" and body.get("enableRemix") is True:
        if not state.config.remix:
            raise BadRequest(4, "当前账号未开启 Remix")
        return True
    return bool(state.config.remix)


def action(request: web.Request, body: dict[str, Any]) -> web.Response:
    """POST /mj/submit/action: press one of a SUCCESS task's buttons."""
    state = _state(request)
    dialect = state.config.dialect
    engine: Engine = state.engine
    task_id = str(body.get("taskId") or "").strip()
    custom_id = _text(body, "customId")
    if not task_id or not custom_id:
        raise BadRequest(4, "taskId 和 customId 不能为空")
    parsed = parse_custom_id(custom_id)
    if dialect == "newapi" and (
        parsed is None
        or parsed.kind in {"pic_reader", "pic_reader_all", "prompt_analyzer", "picread_retry"}
    ):
        raise BadRequest(4, "unknown_action")
    parent = engine.tasks.get(task_id)
    if parent is None:
        raise _not_found()
    if parent.status != SUCCESS:
        raise BadRequest(4, "关联任务状态错误")
    button = parent.button(custom_id)
    if button is None or parsed is None:
        raise BadRequest(4, f"未知的 Action 类型: {custom_id}")
    kind = parsed.kind

    if kind == "pic_reader_all":
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
                "description": "提交成功",
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
        # new-api turns every 21 into 1 except for Vary (Region) and Custom Zoom.
        as_code_1 = dialect == "newapi" and kind not in {"inpaint", "custom_zoom"}
        return submit_modal(
            dialect, _result(state, task.id), suggested, state.instance_id, as_code_1=as_code_1
        )

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


def modal(request: web.Request, body: dict[str, Any]) -> web.Response:
    """POST /mj/submit/modal: confirm a MODAL task with a prompt (and mask)."""
    state = _state(request)
    dialect = state.config.dialect
    engine: Engine = state.engine
    task_id = str(body.get("taskId") or "").strip()
    if not task_id:
        raise BadRequest(4, "taskId不能为空")
    task = engine.tasks.get(task_id)
    if task is None:
        raise _not_found("任务不存在")
    if task.status != MODAL:
        raise BadRequest(4, f"任务状态错误: {task.status} is not MODAL")
    prompt = _text(body, "prompt")
    if task.kind == "custom_zoom":
        match = _ZOOM.search(prompt)
        if match is None or not 1 <= float(match["x"]) <= 2:
            raise BadRequest(4, "Custom Zoom needs '--zoom X' with 1 <= X <= 2 in the prompt")
    mask = body.get("maskBase64")
    if task.kind == "inpaint":
        decoded = _decode_data_uri(mask)
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
    place = engine.confirm_modal(task)
    return submit_accepted(
        dialect, _result(state, task.id), queued=place, instance_id=state.instance_id
    )


def upload(request: web.Request, body: dict[str, Any]) -> web.Response:
    """POST /mj/submit/upload-discord-images: no task, just URLs."""
    state = _state(request)
    images = body.get("base64Array")
    if not isinstance(images, list) or not images:
        raise BadRequest(4, "base64Array不能为空")
    urls: list[str] = []
    for image in images:
        decoded = _decode_data_uri(image)
        if decoded is not None:
            urls.append(_store_upload(request, *decoded))
        elif state.config.dialect == "trueai" and _is_url(image):
            urls.append(str(image))
        else:
            raise BadRequest(4, "base64格式错误")
    return json_response({"code": 1, "description": "提交成功", "result": urls})


def swap_face(request: web.Request, body: dict[str, Any]) -> web.Response:
    """POST /mj/insight-face/swap."""
    state = _state(request)
    dialect = state.config.dialect
    source = body.get("sourceBase64") or (body.get("sourceUrl") if dialect == "trueai" else None)
    target = body.get("targetBase64") or (body.get("targetUrl") if dialect == "trueai" else None)
    if not (_image_ok(dialect, source) and _image_ok(dialect, target)):
        raise BadRequest(4, "sourceBase64 和 targetBase64 必须是图片")
    if source == target:
        raise BadRequest(4, "源图和目标图不能相同")
    if not state.engine.has_room():
        raise _queue_full(state)
    task = _new_task(request, body, kind="swap_face", prompt="", description="/swap")
    task.bot_type = "INSIGHT_FACE"
    return _accept(request, task)


def edits(request: web.Request, body: dict[str, Any]) -> web.Response:
    """POST /mj/submit/edits and /mj/submit/edit (trueai {prompt, image}; 147ai base64Array)."""
    state = _state(request)
    prompt = _text(body, "prompt")
    if not prompt:
        raise BadRequest(4, "prompt不能为空")
    image = body.get("image")
    if image is None and isinstance(body.get("base64Array"), list) and body["base64Array"]:
        image = body["base64Array"][0]
    if not _image_ok(state.config.dialect, image):
        raise BadRequest(4, "image不能为空或格式错误")
    banned = _check_banned(state, prompt)
    if not state.engine.has_room():
        raise _queue_full(state)
    task = _new_task(request, body, kind="edit", prompt=prompt, description=f"/edit {prompt}")
    task.banned = banned
    return _accept(request, task)


def video(request: web.Request, body: dict[str, Any]) -> web.Response:
    """POST /mj/submit/video (new video, or ``action: extend`` of a video task)."""
    state = _state(request)
    engine: Engine = state.engine
    prompt = _text(body, "prompt")
    parent: SimTask | None = None
    if str(body.get("action") or "").lower() == "extend":
        parent = engine.tasks.get(str(body.get("taskId") or ""))
        if parent is None:
            raise _not_found()
        if parent.status != SUCCESS or parent.kind != "video":
            raise BadRequest(4, "关联任务状态错误")
        index = body.get("index")
        if not isinstance(index, int) or not 0 <= index <= 3:
            raise BadRequest(4, "index 必须是 0-3")
        prompt = prompt or parent.prompt
    elif not prompt:
        raise BadRequest(4, "prompt不能为空")
    motion = str(body.get("motion") or "low").lower()
    if motion not in {"low", "high"}:
        raise BadRequest(4, "motion 必须是 low 或 high")
    banned = _check_banned(state, prompt)
    if not engine.has_room():
        raise _queue_full(state)
    task = _new_task(
        request, body, kind="video", prompt=prompt, description=f"/video {prompt}", parent=parent
    )
    task.banned = banned
    task.extra_properties["motion"] = motion
    return _accept(request, task)


# -- task routes -----------------------------------------------------------------------------


def _wire(state: SimulatorState, task: SimTask) -> dict[str, Any]:
    data = task_json(task, state.config.dialect, state.config.image_size)
    # new-api shows status "" until its first sync with the upstream; a read is that sync.
    task.newapi_synced = True
    return data


async def fetch(request: web.Request) -> web.StreamResponse:
    """GET /mj/task/{id}/fetch."""
    state = _state(request)
    task = state.tasks.get(request.match_info["id"])
    if task is None:
        return unknown_task(state.config.dialect)
    return json_response(_wire(state, task))


async def _list(request: web.Request, *, with_displays: bool) -> web.StreamResponse:
    state = _state(request)
    try:
        body = await _body(request)
    except BadRequest as exc:
        return _error(state, exc)
    ids = body.get("ids")
    found: list[dict[str, Any]] = []
    if isinstance(ids, list):
        for task_id in dict.fromkeys(str(i) for i in ids):
            task = state.tasks.get(task_id)
            if task is not None:
                data = _wire(state, task)
                if with_displays and "displays" not in data:
                    data["displays"] = displays(task)
                found.append(data)
    state.rng.shuffle(found)  # the servers promise no order; make clients cope
    return json_response(found)


async def list_by_condition(request: web.Request) -> web.StreamResponse:
    """POST /mj/task/list-by-condition {ids}."""
    return await _list(request, with_displays=False)


async def list_by_ids(request: web.Request) -> web.StreamResponse:
    """POST /mj/task/list-by-ids {ids} (PLUS adds ``displays``)."""
    return await _list(request, with_displays=True)


async def task_list(request: web.Request) -> web.StreamResponse:
    """GET /mj/task/list: every task, newest first (trueai: only the latest 100)."""
    state = _state(request)
    newest_first = list(reversed(state.tasks.values()))
    if state.config.dialect == "trueai":
        newest_first = newest_first[:100]
    return json_response([_wire(state, task) for task in newest_first])


async def sim_stats(request: web.Request) -> web.StreamResponse:
    """GET /sim/stats: the request counters, for tests that run the simulator in a process."""
    state = _state(request)
    return json_response(dict(state.requests))


async def image_seed(request: web.Request) -> web.StreamResponse:
    """GET /mj/task/{id}/image-seed: answers after ``seed_delay``."""
    state = _state(request)
    task = state.tasks.get(request.match_info["id"])
    if task is None:
        return _error(state, _not_found("任务不存在"))
    if task.status != SUCCESS:
        return _error(state, BadRequest(4, "任务状态错误", trueai_status=400))
    await asyncio.sleep(state.config.scaled(state.config.seed_delay))
    if not task.seed:
        task.seed = state.ids.digits(10)
    return json_response({"code": 1, "description": "成功", "result": task.seed})


async def cancel(request: web.Request) -> web.StreamResponse:
    """POST /mj/task/{id}/cancel: CANCEL (plus) or FAILURE "取消任务" with an empty 200 (trueai)."""
    state = _state(request)
    task = state.tasks.get(request.match_info["id"])
    if task is None:
        return _error(state, _not_found("任务不存在"))
    if state.config.dialect == "trueai":
        if not task.is_terminal:
            state.engine.cancel(task, status=FAILURE, reason="取消任务")
        return web.Response(status=200, body=b"")
    if task.is_terminal:
        return _error(state, BadRequest(4, f"任务状态错误: {task.status}"))
    state.engine.cancel(task, status=CANCEL, reason=None)
    return json_response({"code": 1, "description": "成功", "result": task.id})


# -- /sim asset routes -----------------------------------------------------------------------

_IMAGE_NAME = re.compile(r"^(?P<id>\d+)(?:-preview-(?P<pct>\d{1,3}))?\.png$")


async def sim_image(request: web.Request) -> web.StreamResponse:
    """GET /sim/images/{name}: the PNG of a task (final or preview)."""
    state = _state(request)
    match = _IMAGE_NAME.match(request.match_info["name"])
    task = state.tasks.get(match["id"]) if match else None
    if match is None or task is None:
        raise web.HTTPNotFound()
    pct = int(match["pct"]) if match["pct"] is not None else None
    if pct is not None and pct > 100:
        raise web.HTTPNotFound()
    grid = Engine.is_grid(task)
    data = render_image(task.id, state.config.image_size, grid=grid, preview_pct=pct)
    return web.Response(body=data, content_type="image/png")


async def sim_upload(request: web.Request) -> web.StreamResponse:
    """GET /sim/uploads/{name}: bytes uploaded through a submit."""
    state = _state(request)
    stored = state.uploads.get(request.match_info["name"])
    if stored is None:
        raise web.HTTPNotFound()
    data, mime = stored
    return web.Response(body=data, content_type=mime)


async def sim_video(request: web.Request) -> web.StreamResponse:
    """GET /sim/videos/{id}.mp4: a tiny stand-in video."""
    state = _state(request)
    name = request.match_info["name"]
    task = state.tasks.get(name.removesuffix(".mp4"))
    if task is None or not name.endswith(".mp4") or task.video_url is None:
        raise web.HTTPNotFound()
    return web.Response(
        body=fake_mp4(hashlib.sha256(name.encode()).hexdigest()), content_type="video/mp4"
    )


# -- route table -----------------------------------------------------------------------------

ALL = frozenset({"oss", "plus", "trueai", "newapi"})
NOT_OSS = frozenset({"plus", "trueai", "newapi"})


@dataclasses.dataclass(frozen=True)
class RouteSpec:
    """One route of the API and the dialects that serve it."""

    route: Route
    handler: Handler
    dialects: frozenset[str]


def _spec(
    method: str,
    template: str,
    name: str,
    handler: Handler,
    dialects: frozenset[str],
    *,
    creates_task: bool = False,
) -> RouteSpec:
    return RouteSpec(Route(method, template, name, creates_task), handler, dialects)


ROUTES: tuple[RouteSpec, ...] = (
    _spec("POST", "/mj/submit/imagine", "imagine", _submit(imagine), ALL, creates_task=True),
    _spec("POST", "/mj/submit/blend", "blend", _submit(blend), ALL, creates_task=True),
    _spec("POST", "/mj/submit/describe", "describe", _submit(describe), ALL, creates_task=True),
    _spec("POST", "/mj/submit/shorten", "shorten", _submit(shorten), NOT_OSS, creates_task=True),
    _spec("POST", "/mj/submit/action", "action", _submit(action), NOT_OSS, creates_task=True),
    _spec("POST", "/mj/submit/modal", "modal", _submit(modal), NOT_OSS, creates_task=True),
    _spec(
        "POST",
        "/mj/submit/upload-discord-images",
        "upload-discord-images",
        _submit(upload),
        NOT_OSS,
    ),
    _spec("POST", "/mj/insight-face/swap", "swap", _submit(swap_face), NOT_OSS, creates_task=True),
    _spec(
        "POST",
        "/mj/submit/edits",
        "edits",
        _submit(edits),
        frozenset({"trueai", "newapi"}),
        creates_task=True,
    ),
    _spec(
        "POST",
        "/mj/submit/edit",
        "edit",
        _submit(edits),
        frozenset({"trueai"}),
        creates_task=True,
    ),
    _spec(
        "POST",
        "/mj/submit/video",
        "video",
        _submit(video),
        frozenset({"trueai", "newapi"}),
        creates_task=True,
    ),
    _spec("GET", "/mj/task/{id}/fetch", "fetch", fetch, ALL),
    _spec("POST", "/mj/task/list-by-condition", "list-by-condition", list_by_condition, ALL),
    _spec(
        "POST", "/mj/task/list-by-ids", "list-by-ids", list_by_ids, frozenset({"plus", "trueai"})
    ),
    _spec("GET", "/mj/task/list", "list", task_list, frozenset({"oss", "plus", "trueai"})),
    _spec("GET", "/mj/task/{id}/image-seed", "image-seed", image_seed, NOT_OSS),
    _spec("POST", "/mj/task/{id}/cancel", "cancel", cancel, frozenset({"plus", "trueai"})),
)

SIM_ROUTES: tuple[RouteSpec, ...] = (
    _spec("GET", "/sim/images/{name}", "images", sim_image, ALL),
    _spec("GET", "/sim/uploads/{name}", "uploads", sim_upload, ALL),
    _spec("GET", "/sim/videos/{name}", "videos", sim_video, ALL),
    _spec("GET", "/sim/stats", "stats", sim_stats, ALL),
)


def routes_for(dialect: str, disabled: frozenset[str]) -> list[RouteSpec]:
    """The API routes a ``dialect`` serves, minus the ``disabled`` ones, plus the /sim routes."""
    chosen = [
        spec
        for spec in ROUTES
        if dialect in spec.dialects and not any(spec.route.matches(d) for d in disabled)
    ]
    return chosen + list(SIM_ROUTES)
