"""The submit handlers that create a task from a prompt or images: imagine, blend,
describe, shorten, upload, swap face, edits, video (/mj/submit/*, /mj/insight-face/swap).

What each server checks, and the task it creates; the buttons of a finished task are
pressed through ``_action_routes``.
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from ._dialects import (
    json_response,
)
from ._engine import Engine
from ._parsing import (
    BadRequest,
    LogicError,
    NotAnImage,
    Unreadable,
    decode_data_uri,
    is_url,
    text_field,
    trueai_data_url,
)
from ._state import SUCCESS, SimTask
from ._submitting import (
    EXT,
    accept,
    check_banned,
    choices_for_describe,
    dialect_of,
    image_ok,
    new_task,
    not_found,
    numbered,
    require_room,
    state_of,
    store_upload,
    trueai_new_task_checks,
)


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
            trueai_new_task_checks(request, body)
        except LogicError as exc:
            raise BadRequest(4, exc.message) from exc
        banned = check_banned(state, prompt)
        if not all(image_ok(state, i) for i in images):
            raise BadRequest(4, "base64格式错误")
    else:
        # novicezk SubmitController.java imagine(): the banned-word check comes before the
        # images are decoded.
        banned = check_banned(state, prompt)
        if not all(image_ok(state, i) for i in images):
            raise BadRequest(4, "base64格式错误")
    require_room(state)
    task = new_task(request, body, kind="imagine", prompt=prompt, description=f"/imagine {prompt}")
    task.banned = banned
    return accept(request, task)


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
    if not all(image_ok(state, i) for i in images):
        raise BadRequest(4, "base64格式错误")
    trueai_new_task_checks(request, body)
    require_room(state)
    task = new_task(request, body, kind="blend", prompt="", description="")
    task.description = f"/blend {task.id} {len(images)}"
    task.extra_properties["dimensions"] = dimensions
    return accept(request, task)


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
                image_url = store_upload(request, *parsed)
        trueai_new_task_checks(request, body)
        description = "/describe"
    else:
        # novicezk SubmitController.java describe().
        if not (isinstance(raw, str) and raw.strip()):
            raise BadRequest(4, "base64不能为空")
        decoded = decode_data_uri(raw)
        if decoded is None:
            raise BadRequest(4, "base64格式错误")
        image_url = store_upload(request, *decoded)
        description = ""
    require_room(state)
    task = new_task(request, body, kind="describe", prompt="", description=description)
    if not description:
        # novicezk: "/describe <taskId>.<suffix of the image's mime type>".
        decoded = decode_data_uri(raw)
        suffix = EXT.get(decoded[1], "png") if decoded else "png"
        task.description = f"/describe {task.id}.{suffix}"
    task.image_url = image_url
    task.choices = choices_for_describe(state, 4)
    task.result_text = numbered(task.choices)
    return accept(request, task)


def shorten(request: web.Request, body: dict[str, Any]) -> web.Response:
    """POST /mj/submit/shorten."""
    state = state_of(request)
    prompt = text_field(body, "prompt")
    # trueai SubmitController.cs Shorten checks nothing before NewTask.
    if not prompt and dialect_of(state) != "trueai":
        raise BadRequest(4, "prompt不能为空")
    trueai_new_task_checks(request, body)
    require_room(state)
    task = new_task(request, body, kind="shorten", prompt=prompt, description=f"/shorten {prompt}")
    words = prompt.split()
    task.choices = [" ".join(words[: max(1, len(words) * (5 - i) // 5)]) for i in range(5)]
    tokens = ", ".join(words[:5])
    task.result_text = f"**Important tokens**\n{tokens}\n\n**Shortened prompts**\n" + numbered(
        task.choices, "\n\n"
    )
    return accept(request, task)


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
            urls.append(store_upload(request, *decoded))
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
    if not (image_ok(state, source) and image_ok(state, target)):
        raise BadRequest(4, "sourceBase64 和 targetBase64 必须是图片")
    if source == target:
        raise BadRequest(4, "源图和目标图不能相同")
    require_room(state)
    task = new_task(request, body, kind="swap_face", prompt="", description="/swap")
    task.bot_type = "INSIGHT_FACE"
    return accept(request, task)


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
    task = new_task(request, body, kind="swap_face", prompt="", description="/swap")
    task.bot_type = "INSIGHT_FACE"
    return accept(request, task)


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
        if not image_ok(state, image.strip()):
            raise BadRequest(4, "base64格式错误")
        trueai_new_task_checks(request, body)
    else:
        if not prompt:
            raise BadRequest(4, "prompt不能为空")
        if image is None and isinstance(body.get("base64Array"), list) and body["base64Array"]:
            image = body["base64Array"][0]
        if not image_ok(state, image):
            raise BadRequest(4, "image不能为空或格式错误")
    banned = check_banned(state, prompt)
    require_room(state)
    task = new_task(request, body, kind="edit", prompt=prompt, description=f"/edit {prompt}")
    task.banned = banned
    return accept(request, task)


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
        trueai_new_task_checks(request, body)
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
    banned = check_banned(state, prompt)
    require_room(state)
    task = new_task(
        request, body, kind="video", prompt=prompt, description=f"/video {prompt}", parent=parent
    )
    task.banned = banned
    task.extra_properties["motion"] = motion
    return accept(request, task)
