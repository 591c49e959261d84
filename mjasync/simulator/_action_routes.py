"""The handlers that act on an existing task: action (a button's customId), change and
simple-change (novicezk's U/V/reroll by index), and modal (the prompt or mask a button
asked for).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from aiohttp import web

from ._buttons import ALWAYS_MODAL, REMIX_MODAL, parse_custom_id
from ._context import SimulatorState
from ._dialects import (
    json_response,
    submit_accepted,
    submit_modal,
    trueai_reroll_allowed,
)
from ._engine import Engine
from ._parsing import (
    BadRequest,
    ServerFault,
    decode_data_uri,
    java_enum,
    java_integer,
    java_string,
    text_field,
)
from ._state import CANCEL, MODAL, SUCCESS, SimTask, now_ms
from ._submitting import (
    FAULTS_KEY,
    accept,
    check_banned,
    choices_for_describe,
    count_task_faults,
    dialect_of,
    new_task,
    not_found,
    numbered,
    queue_full,
    require_room,
    result,
    state_of,
    trueai_new_task_checks,
)

_ZOOM = re.compile(r"--zoom\s+(?P<x>\d+(?:\.\d+)?)")
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
        trueai_new_task_checks(request, body)
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
            require_room(state)
            task = new_task(
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
            return accept(request, task)
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
            raise queue_full(state)
        ids: list[str] = []
        base_state = body.get("state") if isinstance(body.get("state"), str) else parent.state
        for n, choice in enumerate(parent.choices, start=1):
            child = new_task(
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
        task = new_task(request, body, kind=kind, prompt=suggested, description="", parent=parent)
        task.description = "Waiting for window confirm"
        task.custom_id = custom_id
        task.index = parsed.index
        engine.add_modal(task)
        button.style = 3
        return submit_modal(dialect, result(state, task.id), suggested, state.instance_id)

    require_room(state)
    task = new_task(
        request, body, kind=kind, prompt=parent.prompt, description="Submit success", parent=parent
    )
    task.custom_id = custom_id
    task.index = parsed.index
    task.final_prompt = parent.final_prompt or parent.prompt
    if kind == "picread_retry":
        task.image_url = parent.image_url
        task.choices = choices_for_describe(state, 4)
        task.result_text = numbered(task.choices)
    if parsed.zoom is not None:
        task.extra_properties["zoom"] = parsed.zoom
    button.style = 3
    return accept(request, task)


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
    require_room(state)
    task = new_task(
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
    return accept(request, task)


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
    banned = check_banned(state, final) if final else False
    require_room(state)
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
        count_task_faults(state, faults)
    place = engine.confirm_modal(task)
    return submit_accepted(
        dialect, result(state, task.id), queued=place, instance_id=state.instance_id
    )
