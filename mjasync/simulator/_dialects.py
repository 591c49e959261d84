"""How each dialect spells tasks, submit answers, errors, auth failures and missing routes."""

from __future__ import annotations

import datetime
import hmac
import json
import re
import time
from typing import Any

from aiohttp import web

from ._config import SimulatorConfig
from ._state import MODAL, NOT_START, SUCCESS, SimTask

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
# new-api stores its own action names, not the upstream's (constant/midjourney.go;
# service/midjourney.go CoverPlusActionToNormalAction).
_NEWAPI_ACTIONS = {
    "low_variation": "LOW_VARIATION",
    "high_variation": "HIGH_VARIATION",
    "inpaint": "INPAINT",
    "custom_zoom": "CUSTOM_ZOOM",
    "edit": "EDITS",
}

# novicezk DiscordInstanceImpl.submitTask answers "提交成功" (its docs/api.md example says
# "成功", the code wins).
OK_DESCRIPTION = {"oss": "提交成功", "plus": "提交成功", "trueai": "提交成功", "newapi": "提交成功"}
MODAL_DESCRIPTION = "Waiting for window confirm"
# trueai SubmitController.cs Action(): a reroll keeps its parent's action for these
# parents, becomes IMAGINE on an UPSCALE, and is refused on any other.
_TRUEAI_REROLL_KEEPS = frozenset(
    {
        "IMAGINE",
        "VARIATION",
        "DESCRIBE",
        "BLEND",
        "PAN",
        "ZOOM",
        "SHORTEN",
        "VIDEO",
        "EDIT",
        "UPSCALE_HD",
        "RETEXTURE",
    }
)


def action_name(dialect: str, kind: str, parent_action: str | None = None) -> str:
    """The ``action`` a dialect reports for a job of ``kind``.

    trueai 11 names HD upscales UPSCALE_HD and gives a reroll its parent's action
    (IMAGINE when the parent was an UPSCALE); see :func:`trueai_reroll_allowed`.
    """
    if dialect == "newapi" and kind in _NEWAPI_ACTIONS:
        return _NEWAPI_ACTIONS[kind]
    if dialect == "trueai":
        if kind == "upsample_hd":
            return "UPSCALE_HD"
        if kind == "reroll" and parent_action:
            return "IMAGINE" if parent_action == "UPSCALE" else parent_action
    return _COMMON_ACTIONS.get(kind, kind.upper())


def trueai_reroll_allowed(parent_action: str) -> bool:
    """trueai SubmitController.cs Action(): may a task with this action be rerolled?"""
    return parent_action in _TRUEAI_REROLL_KEEPS or parent_action == "UPSCALE"


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


def _oss_properties(task: SimTask) -> dict[str, Any]:
    # novicezk keeps a HashMap that fills up as the task runs: SubmitController.newTask
    # (notifyHook, nonce), TaskServiceImpl (discordInstanceId), change() (finalPrompt,
    # progressMessageId, referencedMessageId of the parent), StartAndProgressHandler
    # (progressMessageId, finalPrompt, messageHash), MessageHandler.finishTask (messageId,
    # flags, messageHash).
    props: dict[str, Any] = {
        "notifyHook": task.notify_hook,
        "nonce": task.nonce,
        "discordInstanceId": task.instance_id,
    }
    props.update(task.extra_properties)
    started = task.status not in {NOT_START, MODAL}
    if started:
        props["progressMessageId"] = props.get("progressMessageId") or task.message_id
        props["finalPrompt"] = task.final_prompt
    if task.image_url is not None:
        props["messageHash"] = task.message_hash
    if task.status == SUCCESS:
        props["messageId"] = task.message_id
        props["flags"] = 0
    return props


def _oss_json(task: SimTask) -> dict[str, Any]:
    # novicezk support/Task.java + DomainObject.java, serialised by Jackson with nulls kept:
    # no buttons, progress null before the task starts, prompt null on describe/blend until
    # DescribeSuccessHandler sets the four prompts.
    core = _core(task)
    data: dict[str, Any] = {"id": core.pop("id"), "properties": _oss_properties(task), **core}
    if task.kind == "describe" and task.status == SUCCESS:
        # DescribeSuccessHandler: the embed's four prompts become prompt and promptEn.
        data["prompt"] = data["promptEn"] = task.final_prompt
    elif not task.prompt:
        data["prompt"] = data["promptEn"] = None
    if task.status == NOT_START:
        data["progress"] = None
    return data


def _trueai_batch_size(task: SimTask) -> int:
    # trueai TaskInfo.cs GetVideoBatchSize: "--bs N" (1..4) in the prompt, else 4.
    match = re.search(r"--bs\s+(\d+)", task.final_prompt or task.prompt, re.IGNORECASE)
    if match and 1 <= int(match[1]) <= 4:
        return int(match[1])
    return 4


def _sim_base(url: str) -> str:
    return url.rsplit("/sim/", 1)[0]


def _trueai_media(task: SimTask, config: SimulatorConfig) -> dict[str, Any]:
    """imageUrl / imageUrls / videoUrl / videoUrls of a trueai task.

    trueai TaskInfo.cs: a VIDEO task's ImageUrl is itself the video link; VideoUrl,
    VideoUrls and ImageUrls are filled only by SuccessUpdate() with EnableFillOfficialCdn
    (default off), as ``{url, thumbnail}`` objects, ``https://cdn.midjourney.com/...`` there
    and this simulator's own asset routes here.
    """
    is_video = task.kind in {"video", "video_upscale"}
    image = task.video_url if is_video and task.video_url else task.image_url
    media: dict[str, Any] = {"imageUrl": image, "imageUrls": None, "videoUrl": None}
    media["videoUrls"] = None
    if not (config.trueai_fill_official_cdn and task.status == SUCCESS and image):
        return media
    base = _sim_base(image)
    count = _trueai_batch_size(task)
    if task.action == "VIDEO":
        urls = [
            {
                "url": f"{base}/sim/videos/{task.id}_{i}.mp4",
                "thumbnail": f"{base}/sim/images/{task.id}_{i}.png",
            }
            for i in range(count)
        ]
        media.update({"videoUrl": image, "videoUrls": urls, "imageUrls": list(urls)})
    elif task.action == "IMAGINE" or any(
        "MJ::JOB::upsample::" in b.custom_id for b in task.buttons
    ):
        media["imageUrls"] = [
            {
                "url": f"{base}/sim/images/{task.id}_{i}.png",
                "thumbnail": f"{base}/sim/images/{task.id}_{i}.png",
            }
            for i in range(4)
        ]
    return media


def task_json(task: SimTask, config: SimulatorConfig) -> dict[str, Any]:
    """The task object as ``GET /mj/task/{id}/fetch`` of a PLUS/trueai/OSS server returns it.

    new-api answers from its own copy (``_newapi_relay.NewApiRelay.view``); its upstream, whose
    JSON this function gives for ``"newapi"``, is PLUS-like.
    """
    dialect = config.dialect
    if dialect == "oss":
        return _oss_json(task)
    data = _core(task)
    data["buttons"] = [b.to_json() for b in task.buttons]
    data["properties"] = _plus_properties(task)
    has_image = task.status == SUCCESS and task.image_url is not None
    data["imageHeight"] = config.image_size if has_image else None
    data["imageWidth"] = config.image_size if has_image else None
    if dialect == "trueai":
        data["properties"].pop("finalZhPrompt", None)
        if task.kind in {"describe", "picread_retry"} and task.status == SUCCESS:
            data["promptEn"] = task.final_prompt
        data.update(_trueai_media(task, config))
        data.update(
            {
                "parentId": task.parent_id,
                "botType": task.bot_type,
                "realBotType": task.bot_type,
                "mode": task.mode,
                "requestMode": task.mode,
                "seed": task.seed or None,
                "isCompleted": task.is_terminal,
                "thumbnailUrl": data["imageUrl"],
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


def json_response(
    body: Any,
    status: int = 200,
    *,
    sort_keys: bool = False,
    headers: dict[str, str] | None = None,
) -> web.Response:
    """Compact JSON in real UTF-8, as Jackson, System.Text.Json and Go write it.

    ``sort_keys``: Go's encoding/json writes a ``gin.H`` map with its keys sorted.
    """
    text = json.dumps(body, ensure_ascii=False, separators=(",", ":"), sort_keys=sort_keys)
    return web.Response(
        body=text.encode(), status=status, content_type="application/json", headers=headers
    )


def submit_accepted(
    dialect: str,
    result: str | list[str] | int,
    *,
    queued: int,
    instance_id: str,
) -> web.Response:
    """Code 1, or 22 with ``numberOfQueues`` (``queued`` tasks ahead)."""
    props: dict[str, Any] = {"discordInstanceId": instance_id}
    if dialect == "trueai":
        props["discordChannelId"] = instance_id
    code, description = 1, OK_DESCRIPTION[dialect]
    if queued > 0:
        code, description = 22, f"排队中，前面还有{queued}个任务"
        props["numberOfQueues"] = queued
    return json_response(
        {"code": code, "description": description, "result": result, "properties": props}
    )


def submit_modal(
    dialect: str, result: str | int, final_prompt: str, instance_id: str
) -> web.Response:
    """Code 21 (window confirm) for a new MODAL task."""
    return json_response(
        {
            "code": 21,
            "description": MODAL_DESCRIPTION,
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
    """A rejected submit: HTTP 200 + code, or trueai's chosen status (404 for code 3)."""
    status = trueai_status if dialect == "trueai" else 200
    return json_response(
        {"code": code, "description": description, "result": None, "properties": properties or {}},
        status=status,
    )


def trueai_result_fail(message: str) -> web.Response:
    """trueai Models/Result.cs ``Result.Fail``: what CustomLogicExceptionFilterAttribute and
    the model-validation factory (Program.cs) answer, HTTP 200.

    ``timestamp`` is .NET ``DateTime.Now.Ticks`` (100 ns since 0001-01-01) as a string.
    """
    ticks = (time.time_ns() // 100) + 621355968000000000
    return json_response(
        {"success": False, "code": -1, "message": message, "timestamp": str(ticks)}
    )


def unknown_task(dialect: str) -> web.Response:
    """``fetch`` of an unknown id: empty 200 (oss, plus), 204 (trueai).

    new-api's answer comes from ``_newapi``.
    """
    if dialect == "trueai":
        # trueai TaskController.cs Fetch returns null; ASP.NET Core turns it into 204.
        return web.Response(status=204)
    # novicezk TaskController.java fetch() returns null: Spring writes an empty 200.
    return web.Response(status=200, body=b"")


# -- routes a server lacks ----------------------------------------------------------------------

_REASONS = {
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    415: "Unsupported Media Type",
    500: "Internal Server Error",
}


def spring_error(
    request: web.Request, status: int, headers: dict[str, str] | None = None
) -> web.Response:
    """Spring Boot 2.6's default error answer (BasicErrorController, DefaultErrorAttributes).

    novicezk v2.6.3 runs spring-boot-starter-parent 2.6.15 with no error settings of its own
    (application.yml), so ``message`` is left out and ``path`` includes the ``/mj`` context
    path. A browser (``Accept: text/html``) gets the Whitelabel page instead.
    """
    reason = _REASONS.get(status, "Error")
    now = datetime.datetime.now(tz=datetime.UTC)
    if "text/html" in request.headers.get("Accept", ""):
        page = (
            "<html><body><h1>Whitelabel Error Page</h1><p>This application has no explicit "
            "mapping for /error, so you are seeing this as a fallback.</p><div id='created'>"
            f"{now:%a %b %d %H:%M:%S UTC %Y}</div><div>There was an unexpected error "
            f"(type={reason}, status={status}).</div></body></html>"
        )
        return web.Response(text=page, status=status, content_type="text/html", headers=headers)
    stamp = now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}+00:00"
    body = {"timestamp": stamp, "status": status, "error": reason, "path": request.path}
    return json_response(body, status=status, headers=headers)


# Tomcat's own page for a path outside the /mj context (ErrorReportValve with showReport and
# showServerInfo off, as Spring Boot 2.6 configures it). Inferred: not read in a source file.
_TOMCAT_404 = (
    '<!doctype html><html lang="en"><head><title>HTTP Status 404 – Not Found</title>'
    '<style type="text/css">body {font-family:Tahoma,Arial,sans-serif;} h1, h2, h3, b '
    "{color:white;background-color:#525D76;} h1 {font-size:22px;} h2 {font-size:16px;} h3 "
    "{font-size:14px;} p {font-size:12px;} a {color:black;} .line {height:1px;"
    "background-color:#525D76;border:none;}</style></head><body><h1>HTTP Status 404 – Not "
    "Found</h1></body></html>"
)


def tomcat_not_found() -> web.Response:
    """404 for a path outside novicezk's ``/mj`` servlet context (config/application.yml)."""
    return web.Response(text=_TOMCAT_404, status=404, content_type="text/html")


# -- auth ---------------------------------------------------------------------------------------


def _same(given: str | None, key: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), key.encode())


def trueai_token(headers: Any) -> str:
    """trueai WorkContext.cs: the ``Authorization`` header verbatim, else ``Mj-Api-Secret``."""
    authorization = headers.get("Authorization")
    if authorization is not None:
        return str(authorization)
    return str(headers.get("mj-api-secret") or "")


def trueai_role(config: SimulatorConfig, headers: Any) -> str | None:
    """``"ADMIN"`` for ``api_key``, ``"USER"`` for ``trueai_user_keys``, ``None`` for a guest."""
    token = trueai_token(headers)
    if config.api_key is not None and _same(token, config.api_key):
        return "ADMIN"
    if any(_same(token, key) for key in config.trueai_user_keys):
        return "USER"
    return None


def auth_failure(config: SimulatorConfig, headers: Any) -> web.Response | None:
    """``None`` when the request may pass; otherwise the dialect's refusal.

    new-api's refusal is ``_newapi.auth_failure``.
    """
    dialect, api_key = config.dialect, config.api_key
    if api_key is None:
        return None
    if dialect in {"oss", "plus"}:
        # novicezk ApiAuthorizeInterceptor.preHandle: 401 with an empty body.
        secret = headers.get("mj-api-secret")
        return None if _same(secret, api_key) else web.Response(status=401, body=b"")
    # trueai SimpleAuthMiddleware.cs: no user and guests off -> 401 text. "Bearer KEY" is
    # not KEY: trueai compares the header verbatim.
    if trueai_role(config, headers) is not None:
        return None
    return web.Response(status=401, text="Authorization header missing.")
