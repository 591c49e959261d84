"""new-api's relay layer over its upstream: its lagging copy of every task, and how it
rewrites the answers it forwards.

Follows QuantumNous/new-api ``relay/mjproxy_handler.go`` (RelayMidjourneySubmit,
RelaySwapFace, RelayMidjourneyTask), ``service/midjourney.go`` (DoMidjourneyHttpRequest)
and ``controller/midjourney.go`` (UpdateMidjourneyTaskBulk). Its checks before the
upstream is called are in ``_newapi``.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from ._config import SimulatorConfig
from ._newapi import ROUTE_ACTIONS, RelayError, mj_error
from ._state import FAILURE, SimTask, now_ms

__all__ = ["NewApiRelay", "Record"]


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
        if route in ROUTE_ACTIONS and route not in {"modal", "video"}:
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
