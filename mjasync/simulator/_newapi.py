"""new-api in front of a PLUS-like upstream: the relay's own checks, what it drops from the
bodies it forwards, how it rewrites the answers, and its lagging copy of every task.

Everything here follows QuantumNous/new-api: ``middleware/distributor.go`` (customId and
body checks before any upstream call), ``middleware/auth.go`` (TokenAuth),
``relay/mjproxy_handler.go`` (RelayMidjourneySubmit, RelaySwapFace, RelayMidjourneyTask,
RelayMidjourneyImage), ``service/midjourney.go`` (CoverPlusActionToNormalAction,
ConvertSimpleChangeParams, DoMidjourneyHttpRequest), ``controller/midjourney.go``
(UpdateMidjourneyTaskBulk), ``controller/relay.go`` (RelayMidjourney, RelayNotFound) and
``router/web-router.go`` (NoRoute).
"""

from __future__ import annotations

import dataclasses
import hmac
import json
import random
import re
import string
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from ._config import SimulatorConfig
from ._dialects import json_response
from ._state import FAILURE, SimTask, now_ms

# constant/midjourney.go: the actions new-api knows; "mj_<action>" is the model a channel
# must serve (distributor.go picks the channel by it). The simulated operator's Midjourney
# channel serves all of them.
MJ_ACTIONS = frozenset(
    {
        "IMAGINE",
        "DESCRIBE",
        "BLEND",
        "UPSCALE",
        "VARIATION",
        "REROLL",
        "INPAINT",
        "MODAL",
        "ZOOM",
        "CUSTOM_ZOOM",
        "SHORTEN",
        "HIGH_VARIATION",
        "LOW_VARIATION",
        "PAN",
        "SWAP_FACE",
        "UPLOAD",
        "VIDEO",
        "EDITS",
    }
)
# relay/mjproxy_handler.go RelayMidjourneySubmit: the route decides the action for these.
_ROUTE_ACTIONS = {
    "imagine": "IMAGINE",
    "describe": "DESCRIBE",
    "edits": "EDITS",
    "shorten": "SHORTEN",
    "blend": "BLEND",
    "upload-discord-images": "UPLOAD",
    "video": "VIDEO",
    "modal": "MODAL",
    "swap": "SWAP_FACE",
}
# dto/midjourney.go MidjourneyRequest: the fields Go decodes, and their types.
_STRING_FIELDS = (
    "prompt",
    "customId",
    "botType",
    "notifyHook",
    "action",
    "state",
    "taskId",
    "content",
    "maskBase64",
)
_PANIC_SUFFIX = ". Please submit a issue here: https://github.com/Calcium-Ion/new-api"
# Stands in for new-api's embedded dashboard (web/dist/index.html).
WEB_PAGE = (
    '<!doctype html><html lang="zh"><head><meta charset="UTF-8" />'
    '<meta name="viewport" content="width=device-width, initial-scale=1.0" />'
    "<title>New API</title></head><body><noscript>You need to enable JavaScript to run this "
    'app.</noscript><div id="root"></div></body></html>'
)
_MESSAGES = {
    # i18n/locales/en.yaml and zh-CN.yaml
    "token.invalid": {"en": "Invalid token", "zh": "无效的令牌"},
    "distributor.invalid_request": {"en": "Invalid request: {}", "zh": "无效的请求，{}"},
    "distributor.invalid_midjourney_request": {
        "en": "Invalid Midjourney request: {}",
        "zh": "无效的midjourney请求，{}",
    },
    "distributor.no_available_channel": {
        "en": "No available channel for model {} under group {} (distributor)",
        "zh": "分组 {1} 下模型 {0} 无可用渠道（distributor）",
    },
}


class RelayError(Exception):
    """new-api answers by itself, without reaching the upstream."""

    def __init__(self, response: web.Response) -> None:
        super().__init__(response.status)
        self.response = response


@dataclasses.dataclass
class Record:
    """One row of new-api's midjourneys table (model/midjourney.go).

    RelayMidjourneySubmit inserts it from the submit answer; UpdateMidjourneyTaskBulk
    refreshes it from the upstream every ``newapi_sync_interval`` until its progress is
    "100%". Fetches are served from it, never from the upstream.
    """

    mj_id: str
    action: str
    prompt: str
    description: str
    code: int
    submit_time: int
    prompt_en: str = ""
    state: str = ""
    start_time: int = 0
    finish_time: int = 0
    image_url: str = ""
    video_url: str = ""
    video_urls: list[str] | None = None
    status: str = ""
    progress: str = "0%"
    fail_reason: str = ""
    buttons: list[dict[str, Any]] | None = None
    properties: dict[str, Any] | None = None


def _language(request: web.Request) -> str:
    # i18n.go: user setting > Accept-Language > English. The simulator has no user settings
    # and reads only the first language tag.
    accept = request.headers.get("Accept-Language", "").strip().lower()
    return "zh" if accept.startswith("zh") else "en"


def _message(request: web.Request, key: str, *args: str) -> str:
    return _MESSAGES[key][_language(request)].format(*args)


def _request_id() -> str:
    # common.NewRequestId: a timestamp followed by random characters.
    rng = random.SystemRandom()
    tail = "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(8))
    return time.strftime("%Y%m%d%H%M%S") + f"{time.time_ns() % 1_000_000_000:09d}" + tail


def openai_error(status: int, message: str, code: str = "") -> web.Response:
    """middleware/utils.go abortWithOpenAiMessage: ``{"error":{code,message,type}}``."""
    request_id = _request_id()
    body = {
        "error": {
            "code": code,
            "message": f"{message} (request id: {request_id})",
            "type": "new_api_error",
        }
    }
    return json_response(
        body, status=status, sort_keys=True, headers={"X-Oneapi-Request-Id": request_id}
    )


def mj_error(code: int, description: str, result: str = "") -> web.Response:
    """controller/relay.go RelayMidjourney: new-api's own submit errors, HTTP 400 (429 for
    code 30), ``description`` being "<description> <result>"."""
    status = 429 if code == 30 else 400
    body = {"code": code, "description": f"{description} {result}", "type": "upstream_error"}
    return json_response(body, status=status, sort_keys=True)


def _panic(error: str) -> web.Response:
    # main.go gin.CustomRecovery: what a Go runtime panic in a handler turns into.
    body = {
        "error": {
            "message": f"Panic detected, error: {error}{_PANIC_SUFFIX}",
            "type": "new_api_panic",
        }
    }
    return json_response(body, status=500, sort_keys=True)


def no_route(request: web.Request) -> web.Response:
    """router/web-router.go NoRoute: the dashboard page, HTTP 200, for any path new-api's
    router lacks (wrong methods included: gin's HandleMethodNotAllowed is off); paths under
    /v1, /api and /assets get controller.RelayNotFound's 404 instead."""
    if request.path.startswith(("/v1", "/api", "/assets")):
        error = {
            "message": f"Invalid URL ({request.method} {request.path})",
            "type": "invalid_request_error",
            "param": "",
            "code": "",
        }
        return json_response({"error": error}, status=404)
    return web.Response(
        text=WEB_PAGE,
        content_type="text/html",
        charset="utf-8",
        headers={"Cache-Control": "no-cache"},
    )


def _token(value: str) -> str:
    if value.startswith(("Bearer ", "bearer ")):
        value = value[7:].strip()
    return value.removeprefix("sk-")


def auth_failure(config: SimulatorConfig, request: web.Request) -> web.Response | None:
    """middleware/auth.go TokenAuth: ``None`` when the key is good, else its 401.

    The key is ``Authorization`` without "Bearer " (``mj-api-secret`` when that is empty or
    "midjourney-proxy"), without "sk-"; new-api keeps only the part before the first "-"
    (the rest selects a channel), which the simulator mirrors by accepting the configured
    key followed by "-anything".
    """
    if config.api_key is None:
        return None
    key = _token(request.headers.get("Authorization", ""))
    if key in {"", "midjourney-proxy"}:
        key = _token(request.headers.get("mj-api-secret", ""))
    expected = config.api_key.removeprefix("sk-")
    head = key[: len(expected)]
    rest = key[len(expected) :]
    if hmac.compare_digest(head.encode(), expected.encode()) and (not rest or rest[0] == "-"):
        return None
    return openai_error(401, _message(request, "token.invalid"))


# -- the distributor: customIds and bodies, before any upstream call ----------------------------


def _go_type(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def decode_request(request: web.Request, raw: bytes) -> dict[str, Any]:
    """common.UnmarshalBodyReusable into dto.MidjourneyRequest, as the distributor does.

    A body Go cannot decode is refused with HTTP 400 "Invalid request: Invalid Midjourney
    request: <Go's error>" (the error texts are encoding/json's).
    """

    def refuse(error: str) -> RelayError:
        inner = _message(request, "distributor.invalid_midjourney_request", error)
        return RelayError(
            openai_error(400, _message(request, "distributor.invalid_request", inner))
        )

    try:
        data = json.loads(raw) if raw.strip() else None
    except ValueError as exc:
        raise refuse("invalid character in JSON input") from exc
    if data is None:
        if raw.strip():
            return {}
        raise refuse("unexpected end of JSON input")
    if not isinstance(data, dict):
        raise refuse(
            f"json: cannot unmarshal {_go_type(data)} into Go value of type dto.MidjourneyRequest"
        )
    for name in _STRING_FIELDS:
        value = data.get(name)
        if value is not None and not isinstance(value, str):
            raise refuse(
                f"json: cannot unmarshal {_go_type(value)} into Go struct field "
                f"MidjourneyRequest.{name} of type string"
            )
    index = data.get("index")
    if index is not None and (
        isinstance(index, bool) or not isinstance(index, int | float) or index != int(index)
    ):
        shown = _go_type(index) if not isinstance(index, float) else f"number {index:g}"
        raise refuse(
            f"json: cannot unmarshal {shown} into Go struct field "
            "MidjourneyRequest.index of type int"
        )
    return data


def _cover_plus_action(request: web.Request, custom_id: str) -> tuple[str, int]:
    """service/midjourney.go CoverPlusActionToNormalAction: (action, index) of a customId.

    Only ``MJ::JOB::`` upsample/variation/pan/reroll ids and ``Outpaint``/``CustomZoom``/
    ``Inpaint`` map; PicReader, PromptAnalyzer, ``Picread::Retry``, BOOKMARK, video upscales
    and animate ids are "unknown_action" (the distributor turns that into HTTP 400).
    """

    def refuse(description: str) -> RelayError:
        return RelayError(
            openai_error(400, _message(request, "distributor.invalid_request", description))
        )

    if not custom_id:
        raise refuse("custom_id_is_required")
    splits = custom_id.split("::")
    if len(splits) < 2:
        raise RelayError(_panic(f"runtime error: index out of range [1] with length {len(splits)}"))
    action = splits[2] if splits[1] == "JOB" and len(splits) > 2 else splits[1]
    if splits[1] == "JOB" and len(splits) <= 2:
        raise RelayError(_panic(f"runtime error: index out of range [2] with length {len(splits)}"))
    if not action:
        raise refuse("unknown_action")

    def index_at_3() -> int:
        if len(splits) <= 3:
            raise RelayError(
                _panic(f"runtime error: index out of range [3] with length {len(splits)}")
            )
        if not re.fullmatch(r"[+-]?\d+", splits[3]):
            raise refuse("index_parse_failed")
        return int(splits[3])

    if "upsample" in action:
        return "UPSCALE", index_at_3()
    if "variation" in action:
        if action == "variation":
            return "VARIATION", index_at_3()
        if action == "low_variation":
            return "LOW_VARIATION", 1
        if action == "high_variation":
            return "HIGH_VARIATION", 1
        return "", 1
    if "pan" in action:
        return "PAN", 1
    if "reroll" in action:
        return "REROLL", 1
    if action == "Outpaint":
        return "ZOOM", 1
    if action == "CustomZoom":
        return "CUSTOM_ZOOM", 1
    if action == "Inpaint":
        return "INPAINT", 1
    raise refuse(f"unknown_action:{custom_id}")


def _simple_change(request: web.Request, content: str) -> tuple[str, str, int] | None:
    """service/midjourney.go ConvertSimpleChangeParams: (taskId, action, index) or None."""
    split = content.split(" ")
    if len(split) != 2:
        return None
    action = split[1].lower()
    if not action:
        raise RelayError(_panic("runtime error: index out of range [0] with length 0"))
    if action[0] == "u":
        name = "UPSCALE"
    elif action[0] == "v":
        name = "VARIATION"
    elif action == "r":
        return split[0], "REROLL", 0
    else:
        return None
    if len(action) < 2:
        raise RelayError(
            _panic(f"runtime error: slice bounds out of range [:2] with length {len(action)}")
        )
    digit = action[1:2]
    if not digit.isdigit() or not 1 <= int(digit) <= 4:
        return None
    return split[0], name, int(digit)


def distribute(request: web.Request, route: str, body: dict[str, Any]) -> tuple[str, int]:
    """middleware/distributor.go getModelRequest + service.GetMjRequestModel.

    Returns the action new-api records and the index it derived (action routes); refuses
    what the distributor refuses.
    """
    index = body.get("index") or 0
    if route == "action":
        action, index = _cover_plus_action(request, str(body.get("customId") or ""))
    elif route == "change":
        action = str(body.get("action") or "")
    elif route == "simple-change":
        parsed = _simple_change(request, str(body.get("content") or ""))
        if parsed is None:
            raise RelayError(
                openai_error(
                    400, _message(request, "distributor.invalid_request", "invalid_request")
                )
            )
        action, index = parsed[1], parsed[2]
    else:
        action = _ROUTE_ACTIONS[route]
    if action not in MJ_ACTIONS:
        model = "swap_face" if action == "SWAP_FACE" else f"mj_{action.lower()}"
        message = _message(request, "distributor.no_available_channel", model, "default")
        raise RelayError(openai_error(503, message, "model_not_found"))
    return action, int(index)


# -- the relay -----------------------------------------------------------------------------------


class NewApiRelay:
    """new-api's records of the tasks it relayed, and what it shows of them."""

    def __init__(self, config: SimulatorConfig, tasks: dict[str, SimTask]) -> None:
        self.config = config
        self.tasks = tasks
        self.records: dict[str, Record] = {}
        # model/midjourney.go GetAllUnFinishTasks: the rows whose progress is not "100%".
        self._unfinished: dict[str, Record] = {}

    # -- submit ------------------------------------------------------------------------------

    def check_submit(self, route: str, body: dict[str, Any], action: str, index: int) -> str:
        """RelayMidjourneySubmit / RelaySwapFace checks before forwarding.

        Returns the prompt new-api records (the parent's for actions on a task).
        """
        prompt = body.get("prompt") or ""
        task_id = body.get("taskId") or ""
        if route == "simple-change":
            # RelayMidjourneySubmit: the task id comes out of "content" (the distributor has
            # already refused what ConvertSimpleChangeParams cannot parse).
            task_id = str(body.get("content") or "").split(" ")[0]
        if route == "swap":
            if not body.get("sourceBase64") or not body.get("targetBase64"):
                raise RelayError(mj_error(4, "sour_base64_and_target_base64_is_required"))
            return "InsightFace"
        if route == "imagine":
            if prompt == "":
                raise RelayError(mj_error(4, "prompt_is_required"))
            return str(prompt)
        if route in _ROUTE_ACTIONS and route not in {"modal", "video"}:
            return str(prompt)
        if not task_id:
            # No taskId: new-api forwards without looking anything up.
            return str(prompt)
        if route in {"action", "change"} and index == 0:
            raise RelayError(mj_error(4, "index_is_required"))
        origin = self.records.get(str(task_id))
        if origin is None:
            raise RelayError(mj_error(4, "task_not_found"))
        if (
            self.config.newapi_action_check_success
            and origin.status != "SUCCESS"
            and route != "modal"
        ):
            raise RelayError(mj_error(4, "task_status_not_success"))
        return origin.prompt

    def forwarded_body(self, body: dict[str, Any]) -> dict[str, Any]:
        """service/midjourney.go DoMidjourneyHttpRequest: the body the upstream receives."""
        out = dict(body)
        if not self.config.newapi_account_filter:
            out.pop("accountFilter", None)
        if not self.config.newapi_notify:
            out.pop("notifyHook", None)
        prompt = out.get("prompt")
        if self.config.newapi_mode_clear and isinstance(prompt, str):
            for flag in ("--fast", "--relax", "--turbo"):
                prompt = prompt.replace(flag, "")
            out["prompt"] = prompt
        return out

    def answer(self, route: str, action: str, prompt: str, upstream: web.Response) -> web.Response:
        """Record the task and pass the upstream's answer through.

        RelayMidjourneySubmit copies the upstream's body and HTTP status, rewriting only
        ``"code":22`` and (except for INPAINT and CUSTOM_ZOOM) ``"code":21`` into
        ``"code":1``. It writes no Content-Type, so Go's net/http sniffs one: "text/plain;
        charset=utf-8" for JSON. RelaySwapFace re-encodes the decoded answer instead, without
        rewriting codes.
        """
        raw = upstream.body if isinstance(upstream.body, bytes) else b""
        try:
            decoded = json.loads(raw)
        except ValueError:
            decoded = None
        result = decoded.get("result") if isinstance(decoded, dict) else None
        code = decoded.get("code") if isinstance(decoded, dict) else None
        if isinstance(decoded, dict) and result is not None and not isinstance(result, str):
            if not (isinstance(result, list) and all(isinstance(r, str) for r in result)):
                # Neither MidjourneyResponse nor MidjourneyUploadResponse decodes it.
                return mj_error(5, "unmarshal_response_body_failed")
            code, result = 0, None  # the upload answer decodes into a zero MidjourneyResponse
        if isinstance(code, int) and isinstance(result, str) and result:
            description = str(decoded.get("description", "")) if decoded else ""
            record = Record(
                mj_id=result,
                action=action,
                prompt="InsightFace" if route == "swap" else prompt,
                description=description,
                code=code,
                submit_time=now_ms(),
            )
            if code not in {1, 21, 22}:
                record.fail_reason = description
            if result not in self.records:
                self.records[result] = self._unfinished[result] = record
        if route == "swap" and isinstance(decoded, dict):
            body = {
                "code": decoded.get("code", 0),
                "description": decoded.get("description", ""),
                "properties": decoded.get("properties"),
                "result": decoded.get("result") or "",
            }
            raw = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        else:
            if code == 21 and action not in {"INPAINT", "CUSTOM_ZOOM"}:
                raw = raw.replace(b'"code":21', b'"code":1')
            if code == 22:
                raw = raw.replace(b'"code":22', b'"code":1')
        return web.Response(
            body=raw, status=upstream.status, content_type="text/plain", charset="utf-8"
        )

    # -- the copy the client sees ------------------------------------------------------------

    def sync(self) -> None:
        """controller/midjourney.go UpdateMidjourneyTaskBulk: refresh every unfinished record
        from the upstream's list-by-condition."""
        for mj_id, record in list(self._unfinished.items()):
            task = self.tasks.get(mj_id)
            if task is not None:
                self._refresh(record, task)
            if record.progress == "100%":
                del self._unfinished[mj_id]

    def _refresh(self, record: Record, task: SimTask) -> None:
        status, fail_reason = task.status, task.fail_reason or ""
        elapsed_ms = now_ms() - record.submit_time
        scale = self.config.time_scale
        simulated_ms = elapsed_ms / scale if scale > 0 else 0
        if simulated_ms > 3_600_000 and record.progress != "100%":
            status, fail_reason = FAILURE, "上游任务超时（超过1小时）"
        record.code = 1
        record.progress = task.progress
        record.prompt_en = task.prompt_en
        record.state = task.state or ""
        record.submit_time = task.submit_time
        record.start_time = task.start_time or 0
        record.finish_time = task.finish_time or 0
        record.image_url = task.image_url or ""
        record.status = status
        record.fail_reason = fail_reason
        record.properties = {"finalPrompt": task.final_prompt, "finalZhPrompt": ""}
        record.buttons = [b.to_json() for b in task.buttons]
        record.video_url = task.video_url or ""
        record.video_urls = [task.video_url] if task.video_url else None
        if (record.progress != "100%" and fail_reason) or (
            record.progress == "100%" and status == FAILURE
        ):
            record.progress = "100%"

    def view(self, record: Record, origin: str) -> dict[str, Any]:
        """relay/mjproxy_handler.go coverMidjourneyTaskDto, in dto.MidjourneyDto's order.

        With MjForwardUrlEnabled the image URL is new-api's own ``/mj/image/{id}`` (plus
        ``?rand=`` until SUCCESS); ``customId``, ``botType`` and ``maskBase64`` are always
        empty; ``buttons`` and ``properties`` are null until the first sync.
        """
        image_url = record.image_url
        if image_url and self.config.newapi_forward_url:
            image_url = f"{origin}/mj/image/{record.mj_id}"
            if record.status != "SUCCESS":
                image_url += f"?rand={time.time_ns()}"
        return {
            "id": record.mj_id,
            "action": record.action,
            "customId": "",
            "botType": "",
            "prompt": record.prompt,
            "promptEn": record.prompt_en,
            "description": record.description,
            "state": record.state,
            "submitTime": record.submit_time,
            "startTime": record.start_time,
            "finishTime": record.finish_time,
            "imageUrl": image_url,
            "videoUrl": record.video_url,
            "videoUrls": [{"url": u} for u in record.video_urls] if record.video_urls else None,
            "status": record.status,
            "progress": record.progress,
            "failReason": record.fail_reason,
            "buttons": record.buttons,
            "maskBase64": "",
            "properties": record.properties,
        }


UpstreamCall = Callable[[dict[str, Any]], web.Response]
