"""How each dialect spells tasks, submit answers, errors and auth failures on the wire."""

from __future__ import annotations

import datetime
import hmac
import json
from typing import Any

from aiohttp import web

from ._state import FAILURE, SUCCESS, SimTask

_COMMON_ACTIONS = {
    "imagine": "IMAGINE",
    "blend": "BLEND",
    "describe": "DESCRIBE",
    "picread_retry": "DESCRIBE",
    "shorten": "SHORTEN",
    "upsample": "UPSCALE",
    "upsample_hd": "UPSCALE",
    "video_upscale": "UPSCALE",
    "variation": "VARIATION",
    "low_variation": "VARIATION",
    "high_variation": "VARIATION",
    "inpaint": "VARIATION",
    "reroll": "REROLL",
    "pan": "PAN",
    "outpaint": "ZOOM",
    "custom_zoom": "ZOOM",
    "pic_reader": "IMAGINE",
    "prompt_analyzer": "IMAGINE",
    "swap_face": "SWAP_FACE",
    "edit": "EDIT",
    "video": "VIDEO",
}
# new-api stores its own action names, not the upstream's (constant/midjourney.go).
_NEWAPI_ACTIONS = {
    "low_variation": "LOW_VARIATION",
    "high_variation": "HIGH_VARIATION",
    "inpaint": "INPAINT",
    "custom_zoom": "CUSTOM_ZOOM",
    "edit": "EDITS",
}

OK_DESCRIPTION = {"oss": "成功", "plus": "提交成功", "trueai": "提交成功", "newapi": "提交成功"}
MODAL_DESCRIPTION = "Waiting for window confirm"


def action_name(dialect: str, kind: str, parent_action: str | None = None) -> str:
    """The ``action`` a dialect reports for a job of ``kind``.

    trueai 11 names HD upscales UPSCALE_HD and gives a reroll its parent's action
    (IMAGINE when the parent was an upscale).
    """
    if dialect == "newapi" and kind in _NEWAPI_ACTIONS:
        return _NEWAPI_ACTIONS[kind]
    if dialect == "trueai":
        if kind == "upsample_hd":
            return "UPSCALE_HD"
        if kind == "reroll" and parent_action:
            return "IMAGINE" if parent_action.startswith("UPSCALE") else parent_action
    return _COMMON_ACTIONS.get(kind, kind.upper())


def _fmt_ms(ms: int | None) -> str | None:
    if not ms:
        return None
    stamp = datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.UTC)
    return stamp.strftime("%Y-%m-%d %H:%M:%S")


_STATUS_DISPLAY = {
    "NOT_START": "未启动",
    "SUBMITTED": "已提交",
    "IN_PROGRESS": "执行中",
    "SUCCESS": "成功",
    "FAILURE": "失败",
    "MODAL": "窗口等待",
    "CANCEL": "已取消",
}


def displays(task: SimTask) -> dict[str, Any]:
    """PLUS ``list-by-ids`` / trueai ``displays``: human-readable times and status."""
    return {
        "status": _STATUS_DISPLAY.get(task.status, task.status),
        "action": task.action,
        "submitTime": _fmt_ms(task.submit_time),
        "startTime": _fmt_ms(task.start_time),
        "finishTime": _fmt_ms(task.finish_time),
        "discordInstanceId": task.instance_id,
    }


def _core(task: SimTask) -> dict[str, Any]:
    return {
        "id": task.id,
        "action": task.action,
        "status": task.status,
        "prompt": task.prompt,
        "promptEn": task.prompt_en,
        "description": task.description,
        "state": task.state,
        "submitTime": task.submit_time,
        "startTime": task.start_time,
        "finishTime": task.finish_time,
        "progress": task.progress,
        "imageUrl": task.image_url,
        "failReason": task.fail_reason,
    }


def _plus_properties(task: SimTask) -> dict[str, Any]:
    props: dict[str, Any] = {
        "discordInstanceId": task.instance_id,
        "discordChannelId": task.instance_id,
        "botType": task.bot_type,
        "notifyHook": task.notify_hook,
        "flags": 0,
        "messageId": task.message_id,
        "messageHash": task.message_hash,
        "nonce": task.nonce,
        "finalPrompt": task.final_prompt,
        "finalZhPrompt": "",
        "progressMessageId": task.message_id,
        "messageContent": f"**{task.final_prompt}** - <@1050702627576483930> ({task.mode.lower()})",
    }
    props.update(task.extra_properties)
    return props


def task_json(task: SimTask, dialect: str, image_size: int) -> dict[str, Any]:
    """The task object as ``GET /mj/task/{id}/fetch`` in ``dialect`` would return it."""
    if dialect == "newapi":
        return _newapi_json(task)
    data = _core(task)
    if dialect == "oss":
        data["properties"] = {
            "discordInstanceId": task.instance_id,
            "notifyHook": task.notify_hook,
            "finalPrompt": task.final_prompt,
            "messageHash": task.message_hash,
            "messageId": task.message_id,
            "nonce": task.nonce,
            "flags": 0,
        }
        return data
    data["buttons"] = [b.to_json() for b in task.buttons]
    data["properties"] = _plus_properties(task)
    has_image = task.status == SUCCESS and task.image_url is not None
    data["imageHeight"] = image_size if has_image else None
    data["imageWidth"] = image_size if has_image else None
    if dialect == "trueai":
        data["properties"].pop("finalZhPrompt", None)
        if task.kind in {"describe", "picread_retry"} and task.status == SUCCESS:
            data["promptEn"] = task.final_prompt
        video_urls = (
            [{"url": task.video_url, "thumbnail": task.image_url}] if task.video_url else None
        )
        image_urls = (
            [{"url": task.image_url, "thumbnail": task.image_url}]
            if task.status == SUCCESS and task.image_url
            else []
        )
        data.update(
            {
                "parentId": task.parent_id,
                "botType": task.bot_type,
                "realBotType": task.bot_type,
                "mode": task.mode,
                "requestMode": task.mode,
                "seed": task.seed or None,
                "isCompleted": task.is_terminal,
                "imageUrls": image_urls,
                "thumbnailUrl": task.image_url,
                "videoUrl": task.video_url,
                "videoUrls": video_urls,
                "instanceId": task.instance_id,
                "subInstanceId": None,
                "nonce": task.nonce,
                "messageId": task.message_id,
                "jobId": task.message_hash if task.status == SUCCESS else None,
                "promptFull": task.final_prompt,
                "remixAutoSubmit": False,
                "remixModaling": task.status == "MODAL",
                "isDiscord": True,
                "userId": None,
                "version": "v 6.1",
                "displays": displays(task),
            }
        )
    return data


def _newapi_json(task: SimTask) -> dict[str, Any]:
    status = task.status if task.newapi_synced else ""
    progress = "100%" if task.status == FAILURE else task.progress
    return {
        "id": task.id,
        "action": task.action,
        "customId": "",
        "botType": "",
        "prompt": task.prompt,
        "promptEn": task.prompt_en,
        "description": task.description,
        "state": task.state or "",
        "submitTime": task.submit_time or 0,
        "startTime": task.start_time or 0,
        "finishTime": task.finish_time or 0,
        "imageUrl": task.image_url or "",
        "videoUrl": task.video_url or "",
        "videoUrls": [{"url": task.video_url}] if task.video_url else None,
        "status": status,
        "progress": progress,
        "failReason": task.fail_reason or "",
        "buttons": [b.to_json() for b in task.buttons],
        "maskBase64": "",
        "properties": {"finalPrompt": task.final_prompt, "finalZhPrompt": ""},
    }


def json_response(body: Any, status: int = 200) -> web.Response:
    """A JSON response with compact separators and real UTF-8 (the proxies do not escape)."""
    return web.Response(
        body=json.dumps(body, ensure_ascii=False).encode(),
        status=status,
        content_type="application/json",
    )


def submit_accepted(
    dialect: str,
    result: str | list[str] | int,
    *,
    queued: int,
    instance_id: str,
) -> web.Response:
    """Code 1, or 22 with ``numberOfQueues`` (new-api rewrites 22 to 1 but keeps properties)."""
    props: dict[str, Any] = {"discordInstanceId": instance_id}
    if dialect == "trueai":
        props["discordChannelId"] = instance_id
    code, description = 1, OK_DESCRIPTION[dialect]
    if queued > 0:
        code, description = 22, f"排队中，前面还有{queued}个任务"
        props["numberOfQueues"] = queued
        if dialect == "newapi":
            code = 1
    return json_response(
        {"code": code, "description": description, "result": result, "properties": props}
    )


def submit_modal(
    dialect: str, result: str | int, final_prompt: str, instance_id: str, *, as_code_1: bool
) -> web.Response:
    """Code 21 (window confirm) for a new MODAL task; new-api's rewrite makes some of them 1."""
    code = 1 if as_code_1 else 21
    description = OK_DESCRIPTION[dialect] if as_code_1 else MODAL_DESCRIPTION
    return json_response(
        {
            "code": code,
            "description": description,
            "result": result,
            "properties": {
                "finalPrompt": final_prompt,
                "remix": True,
                "discordInstanceId": instance_id,
            },
        }
    )


def submit_error(
    dialect: str,
    code: int,
    description: str,
    *,
    properties: dict[str, Any] | None = None,
    trueai_status: int = 200,
) -> web.Response:
    """A rejected submit: HTTP 200 + code (oss/plus), trueai's chosen status, new-api's 400."""
    if dialect == "newapi":
        body = {"description": f"{description} ", "type": "upstream_error", "code": code}
        return json_response(body, status=429 if code == 30 else 400)
    status = trueai_status if dialect == "trueai" else 200
    return json_response(
        {"code": code, "description": description, "result": None, "properties": properties or {}},
        status=status,
    )


def unknown_task(dialect: str) -> web.Response:
    """``fetch`` of an unknown id: empty 200 (oss, plus), 204 (trueai), 400 JSON (new-api)."""
    if dialect == "trueai":
        return web.Response(status=204)
    if dialect == "newapi":
        return json_response(
            {"description": "task_no_found ", "type": "upstream_error", "code": 4}, status=400
        )
    return web.Response(status=200, body=b"")


def _same(given: str | None, key: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), key.encode())


def auth_failure(dialect: str, api_key: str | None, headers: Any) -> web.Response | None:
    """``None`` when the request may pass; otherwise the dialect's 401 answer."""
    if api_key is None:
        return None
    secret = headers.get("mj-api-secret")
    authorization = headers.get("Authorization")
    if dialect in {"oss", "plus"}:
        return None if _same(secret, api_key) else web.Response(status=401, body=b"")
    if dialect == "trueai":
        # trueai compares the Authorization header verbatim: "Bearer KEY" does not match.
        given = authorization if authorization else secret
        if _same(given, api_key):
            return None
        return web.Response(status=401, text="Authorization header missing.")
    candidates = [secret]
    if authorization:
        candidates.append(authorization)
        if authorization.startswith("Bearer "):
            candidates.append(authorization.removeprefix("Bearer "))
    if any(_same(c, api_key) for c in candidates):
        return None
    return json_response({"error": {"message": "无效的令牌", "type": "new_api_error"}}, status=401)
