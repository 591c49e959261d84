"""The button routes of `Client`: action, change and modal.

`action` presses a button through ``/submit/action``, or through novicezk's legacy
``/submit/change`` where a server has no ``/submit/action`` (never both for one press:
only an answer that proves nothing was created may fall back). The flows built on them
(`run_action`, `upscale_all`) are in `_chains`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Literal, cast, get_args

from ._buttons import CHANGE_PARENT_ACTIONS, Button, change_of
from ._checks import require_utf8
from ._errors import APIError, Delivery, InvalidRequestError, delivery_of
from ._images import ImageInput
from ._models import (
    AccountFilter,
    Submission,
    Task,
    TaskStatus,
    resolve_button,
    task_id_of,
)
from ._responses import route_missing
from ._submits import SubmitRoutes

__all__ = ["ActionRoutes", "ChangeAction"]

logger = logging.getLogger("mjasync")

ChangeAction = Literal["UPSCALE", "VARIATION", "REROLL"]
"""What novicezk's ``/submit/change`` does (any case is accepted)."""
_CHANGE_ACTIONS: tuple[str, ...] = get_args(ChangeAction)
# Parents /submit/change accepts (novicezk SubmitController.java change()); new-api labels
# the variations it relayed from PLUS HIGH_/LOW_VARIATION, which upstream are VARIATIONs.
_CHANGE_PARENTS = CHANGE_PARENT_ACTIONS | {"HIGH_VARIATION", "LOW_VARIATION"}


class ActionRoutes(SubmitRoutes):
    """The button coroutines of `Client` (a mixin; see `Client` for the arguments)."""

    async def action(
        self,
        task: Task | str,
        button: Button | str,
        *,
        account_filter: AccountFilter | None = None,
        choose_same_channel: bool | None = None,
        enable_remix: bool | None = None,
        state: str | None = None,
        notify_hook: str | None = None,
    ) -> Submission:
        """Press a button of a finished task (``/submit/action``, or ``/submit/change``).

        *button* is a `Button`, a customId, or, when *task* is a `Task`, any key
        `Task.button` accepts (``"U1"``, ``"vary_region"``, a label or an emoji).
        A button that opens a modal answers code 21: the `Submission` names the MODAL
        task; finish it with `modal` (or use `run_action` with ``prompt=``).

        On novicezk's open-source proxy, which has no ``/submit/action`` and sends no
        buttons, the buttons a finished grid implies (`Button.implied`: U1-U4, V1-V4,
        reroll) are pressed through ``/submit/change``. A U, V or reroll button is also
        pressed there when the server answers that it has no ``/submit/action`` (that
        answer proves nothing was created, so the press is still sent only once); the
        client then remembers it and goes to ``/submit/change`` directly.

        Raises:
            mjasync.ButtonNotFoundError: the task has no such button, or it ended in
                FAILURE or CANCEL (nothing is sent).
            mjasync.TaskNotFoundError: the server does not know the parent task
                (``.task_id`` is its id; ``.code`` as sent: 3, or new-api's 4).
            mjasync.RouteNotFoundError: the server has no ``/submit/action`` and the
                button is not one ``/submit/change`` can press.
        """
        task_id = task_id_of(task)
        pressed = resolve_button(task, button)
        common = self._common(state=state, notify_hook=notify_hook, account_filter=account_filter)
        change = change_of(pressed)
        if change is not None and (
            pressed.implied or self._server.routes.get("action_route") is False
        ):
            return await self._send_change(task_id, *change, common)
        body = {
            "taskId": task_id,
            "customId": pressed.custom_id,
            "chooseSameChannel": choose_same_channel,
            "enableRemix": enable_remix,
            **common,
        }
        try:
            return await self._submit("/submit/action", body, task_id=task_id)
        except APIError as error:
            # Only a missing route may fall back: it proves nothing was created. Any
            # other failure may hide a started job, and a second route would pay twice.
            if (
                change is None
                or not route_missing(error)
                or delivery_of(error) is not Delivery.REJECTED
            ):
                raise
            self._server.route("/submit/action", False)
            logger.info(
                "%s has no /submit/action; pressing %s through /submit/change",
                self._base_url,
                pressed.name,
            )
        return await self._send_change(task_id, *change, common)

    async def change(
        self,
        task: Task | str,
        action: str,
        index: int | None = None,
        *,
        account_filter: AccountFilter | None = None,
        state: str | None = None,
        notify_hook: str | None = None,
    ) -> Submission:
        """Upscale, vary or reroll a grid through novicezk's ``/submit/change``.

        The legacy route of novicezk's open-source proxy (and of PLUS, and of the new-api
        relay; trueai removed it in v10): ``action`` is ``"UPSCALE"``, ``"VARIATION"`` or
        ``"REROLL"`` (any case) and ``index`` picks the image, 1 to 4, required for
        UPSCALE and VARIATION. REROLL needs none; 1 is sent, because new-api refuses an
        index of 0 ("index_is_required") and the other servers ignore it. `action` and
        `run_action` use this route by themselves where ``/submit/action`` is missing.

        Args:
            task: a finished IMAGINE, VARIATION, REROLL or BLEND task, or its id.
            action: ``"UPSCALE"``, ``"VARIATION"`` or ``"REROLL"``.
            index: 1..4 (the image in the grid, left to right, top to bottom).

        Raises:
            mjasync.InvalidRequestError: a bad action or index, or a `Task` that is not
                a finished grid; nothing is sent.
            mjasync.TaskNotFoundError: the server does not know the task.
            mjasync.SubmitRejectedError: refused (code 4 "关联任务状态错误" …).
        """
        task_id = task_id_of(task)
        name = action.strip().upper() if isinstance(cast(object, action), str) else action
        if name not in _CHANGE_ACTIONS:
            msg = f'action must be "UPSCALE", "VARIATION" or "REROLL", got {action!r}'
            raise InvalidRequestError(msg)
        if index is None and name != "REROLL":
            msg = f"{name} needs index= 1 to 4 (the image in the grid)"
            raise InvalidRequestError(msg)
        given: object = index
        if given is not None and (
            isinstance(given, bool) or not isinstance(given, int) or not 1 <= given <= 4
        ):
            msg = f"index must be 1, 2, 3 or 4, got {index!r}"
            raise InvalidRequestError(msg)
        if isinstance(task, Task):
            _check_change_parent(task)
        common = self._common(state=state, notify_hook=notify_hook, account_filter=account_filter)
        return await self._send_change(task_id, name, index or 1, common)

    async def _mask(self, mask: ImageInput) -> str:
        """A Vary (Region) mask as a PNG data URI (`modal` and `Client.run_action`)."""
        return await self._images.data_uri(mask, "mask", png_only=True)

    async def _send_change(
        self, task_id: str, action: str, index: int, common: Mapping[str, Any]
    ) -> Submission:
        body = {"taskId": task_id, "action": action, "index": index, **common}
        return await self._submit("/submit/change", body, task_id=task_id)

    async def modal(
        self,
        task_id: Task | Submission | str,
        *,
        prompt: str | None = None,
        mask: ImageInput | None = None,
        state: str | None = None,
        notify_hook: str | None = None,
    ) -> Submission:
        """Confirm a MODAL task (``/submit/modal``) with a prompt and, for Vary (Region), a mask.

        *mask* is PNG bytes, a `Path` or a data URI (white = repaint). Custom zoom
        needs ``--zoom`` between 1 and 2 in *prompt*.

        Raises:
            mjasync.TaskNotFoundError: the server does not know *task_id*.
        """
        target = task_id_of(task_id)
        if prompt is not None:
            if not isinstance(cast(object, prompt), str) or not prompt.strip():
                msg = "prompt must not be blank (leave it None to keep the suggested prompt)"
                raise InvalidRequestError(msg)
            require_utf8(prompt, "prompt")
        common = self._common(state=state, notify_hook=notify_hook)
        mask_uri = await self._mask(mask) if mask is not None else None
        body = {"taskId": target, "prompt": prompt, "maskBase64": mask_uri, **common}
        return await self._submit("/submit/modal", body, task_id=target)


def _check_change_parent(task: Task) -> None:
    """Refuse a parent ``/submit/change`` certainly refuses (novicezk SubmitController.java)."""
    if task.status != TaskStatus.SUCCESS:
        msg = (
            f"task {task.id} is {task.status or 'of unknown status'}: /submit/change needs a "
            "finished (SUCCESS) grid; wait for it with await_task first"
        )
        raise InvalidRequestError(msg)
    if task.action is not None and task.action not in _CHANGE_PARENTS:
        msg = (
            f"task {task.id} is an {task.action} task: /submit/change acts only on "
            "IMAGINE, VARIATION, REROLL and BLEND grids"
        )
        raise InvalidRequestError(msg)
