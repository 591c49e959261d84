"""new-api in front of a PLUS-like upstream: what the relay answers by itself, before any
upstream call (its key check, the distributor's customId and body checks, its error
shapes and web page). The relay proper (what it forwards, how it rewrites the answers,
its lagging copy of every task) is ``_newapi_relay``.

Everything here follows QuantumNous/new-api: ``middleware/distributor.go`` (customId and
body checks before any upstream call), ``middleware/auth.go`` (TokenAuth),
``service/midjourney.go`` (CoverPlusActionToNormalAction, ConvertSimpleChangeParams),
``controller/relay.go`` (RelayMidjourney, RelayNotFound) and ``router/web-router.go``
(NoRoute).
"""

from __future__ import annotations

import hmac
import json
import random
import re
import string
import time
from typing import Any

from aiohttp import web

from ._config import SimulatorConfig
from ._dialects import json_response

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
ROUTE_ACTIONS = {
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
        action = ROUTE_ACTIONS[route]
    if action not in MJ_ACTIONS:
        model = "swap_face" if action == "SWAP_FACE" else f"mj_{action.lower()}"
        message = _message(request, "distributor.no_available_channel", model, "default")
        raise RelayError(openai_error(503, message, "model_not_found"))
    return action, int(index)
