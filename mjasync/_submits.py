"""The submit routes of `Client`: imagine, blend, describe, shorten, swap_face, edit,
video, upload and the raw `submit`, with the fields every submit shares.

Image URLs stay URLs wherever the route takes them; where a server answers that it
wants base64 (a validation refusal that created nothing), `_submit_inputs` downloads
them and sends the body once more, and remembers the route.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, cast, get_args

import attrs

from ._base import BaseClient
from ._checks import require_text
from ._errors import (
    APIError,
    DecodeError,
    InvalidRequestError,
    QueueFullError,
    RateLimitError,
    ServerError,
    TaskNotFoundError,
    body_preview,
)
from ._images import ImageInput, as_image_list, is_url
from ._models import AccountFilter, Submission, Task, task_id_of
from ._responses import read_body, submission_or_raise
from ._retry import RequestKind
from ._serde import encode_account_filter
from ._transport import Response

__all__ = ["BotType", "Dimensions", "Motion", "SubmitRoutes"]

logger = logging.getLogger("mjasync")

Dimensions = Literal["PORTRAIT", "SQUARE", "LANDSCAPE"]
"""A blend's aspect (any case is accepted)."""
BotType = Literal["MID_JOURNEY", "NIJI_JOURNEY"]
"""Which bot runs a task; ``"mj"`` and ``"niji"`` (any case) are accepted too."""
_DIMENSIONS: tuple[str, ...] = get_args(Dimensions)
_BOT_TYPES = dict(zip(("mj", "niji"), get_args(BotType), strict=True))
Motion = Literal["low", "high"]
"""How much a video moves."""
_MOTIONS: tuple[str, ...] = get_args(Motion)
_STATE_LIMIT = 255


class SubmitRoutes(BaseClient):
    """The submit coroutines of `Client` (a mixin; see `Client` for the arguments)."""

    def _common(
        self,
        *,
        state: str | None,
        notify_hook: str | None,
        account_filter: AccountFilter | None = None,
        bot_type: str | None = None,
    ) -> dict[str, Any]:
        """The fields every submit may carry, checked: botType, accountFilter, state and
        notifyHook (this client's hook unless *notify_hook* names another)."""
        if state is not None and len(state) > _STATE_LIMIT:
            msg = f"state is {len(state)} characters; proxies reject more than {_STATE_LIMIT}"
            raise InvalidRequestError(msg)
        if account_filter is not None and not isinstance(
            cast(object, account_filter), AccountFilter
        ):
            msg = "account_filter must be a mjasync.AccountFilter"
            raise InvalidRequestError(msg)
        if bot_type is not None:
            bot_type = _BOT_TYPES.get(bot_type.lower(), bot_type.upper())
            if bot_type not in _BOT_TYPES.values():
                msg = f'bot_type must be "MID_JOURNEY" or "NIJI_JOURNEY", got {bot_type!r}'
                raise InvalidRequestError(msg)
        if (
            account_filter is not None
            and account_filter.channel_id is not None
            and self._server.dialect == "trueai"
        ):
            # trueai's AccountFilter (Dto/BaseSubmitDTO.cs) has no channel id: only
            # instanceId picks an account there.
            account_filter = attrs.evolve(account_filter, channel_id=None)
        return {
            "botType": bot_type,
            "accountFilter": (
                encode_account_filter(account_filter) if account_filter is not None else None
            ),
            "state": state,
            "notifyHook": notify_hook if notify_hook is not None else self._hooks.url,
        }

    async def _submit_inputs(
        self,
        path: str,
        values: Sequence[str],
        whats: Sequence[str],
        build: Callable[[Sequence[str]], Mapping[str, Any]],
    ) -> Submission:
        """Submit with image URLs as URLs; where the server wants base64, download them.

        *values* are checked URLs and data URIs; *build* makes the body from them. A
        server without the URL form answers code 4 naming base64 (novicezk's describe
        "base64不能为空" and blend "base64格式错误", new-api's swap
        "sour_base64_and_target_base64_is_required"): such a validation refusal created no
        task and cost nothing, so the URLs are downloaded and the body sent once more,
        as base64. When the refused body held only URLs, this client remembers that the
        route needs base64 and downloads first from then on.
        """
        if path not in self._base64_routes and any(is_url(value) for value in values):
            try:
                return await self._submit(path, build(values))
            except APIError as error:
                if not _refuses_urls(error):
                    raise
                if all(is_url(value) for value in values):
                    self._base64_routes.add(path)
                logger.info("%s refused image URLs (%s); sending base64", path, error.description)
        encoded = [
            await self._images.data_uri(value, what) if is_url(value) else value
            for value, what in zip(values, whats, strict=True)
        ]
        return await self._submit(path, build(encoded))

    # -- submits ---------------------------------------------------------------------

    async def imagine(
        self,
        prompt: str,
        *,
        images: Sequence[ImageInput] = (),
        bot_type: str | None = None,
        account_filter: AccountFilter | None = None,
        state: str | None = None,
        notify_hook: str | None = None,
    ) -> Submission:
        """Submit ``/imagine``: a prompt (with its parameters) and optional reference images.

        Image URLs in *images* go where Midjourney reads them, at the start of the prompt
        (``"<url1> <url2> prompt --params"``): nothing is downloaded, and it works where
        a server forbids base64 uploads (trueai's "禁止上传"). Bytes, paths and data URIs
        go in ``base64Array`` (the proxy uploads them and adds their links to the prompt).

        Raises:
            mjasync.InvalidRequestError: empty prompt or a bad image, before sending.
            mjasync.BannedPromptError: code 24.
            mjasync.QueueFullError: the queue stayed full through every retry.
        """
        require_text(prompt, "prompt")
        common = self._common(
            state=state, notify_hook=notify_hook, account_filter=account_filter, bot_type=bot_type
        )
        values = await self._images.data_uris_or_urls(images, "reference image") if images else []
        urls = [value for value in values if is_url(value)]
        encoded = [value for value in values if not is_url(value)] or None
        text = " ".join([*urls, prompt.lstrip()]) if urls else prompt
        return await self._submit(
            "/submit/imagine", {"prompt": text, "base64Array": encoded, **common}
        )

    async def blend(
        self,
        images: Sequence[ImageInput],
        *,
        dimensions: str | None = None,
        bot_type: str | None = None,
        account_filter: AccountFilter | None = None,
        state: str | None = None,
        notify_hook: str | None = None,
    ) -> Submission:
        """Submit ``/blend`` of 2 to 5 images; *dimensions* is PORTRAIT, SQUARE or LANDSCAPE.

        Image URLs are sent as URLs in ``base64Array`` (trueai takes them); novicezk's
        proxy takes only data URIs and refuses with code 4 "base64格式错误", a refusal that
        creates no task: the URLs are then downloaded (streamed, within
        ``max_image_bytes``) and the blend sent again as base64, and this client sends
        base64 to that route from then on.
        """
        items = as_image_list(images)
        if not 2 <= len(items) <= 5:
            msg = f"blend takes 2 to 5 images, got {len(items)}"
            raise InvalidRequestError(msg)
        if dimensions is not None and dimensions.upper() not in _DIMENSIONS:
            msg = f"dimensions must be one of {', '.join(_DIMENSIONS)}, got {dimensions!r}"
            raise InvalidRequestError(msg)
        common = self._common(
            state=state, notify_hook=notify_hook, account_filter=account_filter, bot_type=bot_type
        )
        whats = [f"blend image {i}" for i in range(1, len(items) + 1)]
        values = [
            await self._images.data_uri_or_url(i, w) for i, w in zip(items, whats, strict=True)
        ]
        size = dimensions.upper() if dimensions else None
        return await self._submit_inputs(
            "/submit/blend",
            values,
            whats,
            lambda sent: {"base64Array": list(sent), "dimensions": size, **common},
        )

    async def describe(
        self,
        image: ImageInput,
        *,
        bot_type: str | None = None,
        account_filter: AccountFilter | None = None,
        state: str | None = None,
        notify_hook: str | None = None,
    ) -> Submission:
        """Submit ``/describe``: the finished task's ``final_prompt`` holds four prompts.

        An image URL is sent as trueai's ``link`` (``Dto/SubmitDescribeDTO.cs``), which
        works even where base64 uploads are forbidden; it is not also put in ``base64``,
        because trueai checks that field first and refuses it when uploads are off.
        novicezk's proxy has no ``link`` and answers code 4 "base64不能为空" without creating
        a task: the image is then downloaded (streamed, within ``max_image_bytes``) and
        sent as a data URI in ``base64``, and this client does so up front from then on.
        Bytes, paths and data URIs always go in ``base64``.
        """
        common = self._common(
            state=state, notify_hook=notify_hook, account_filter=account_filter, bot_type=bot_type
        )
        value = await self._images.data_uri_or_url(image, "describe image")

        def body(sent: Sequence[str]) -> dict[str, Any]:
            field = "link" if is_url(sent[0]) else "base64"
            return {field: sent[0], **common}

        return await self._submit_inputs("/submit/describe", [value], ["describe image"], body)

    async def shorten(
        self,
        prompt: str,
        *,
        bot_type: str | None = None,
        account_filter: AccountFilter | None = None,
        state: str | None = None,
        notify_hook: str | None = None,
    ) -> Submission:
        """Submit ``/shorten``: the finished task's ``final_prompt`` holds the analysis."""
        require_text(prompt, "prompt")
        common = self._common(
            state=state, notify_hook=notify_hook, account_filter=account_filter, bot_type=bot_type
        )
        return await self._submit("/submit/shorten", {"prompt": prompt, **common})

    async def swap_face(
        self,
        source: ImageInput,
        target: ImageInput,
        *,
        account_filter: AccountFilter | None = None,
        state: str | None = None,
        notify_hook: str | None = None,
    ) -> Submission:
        """Put the face in *source* onto *target* (``/insight-face/swap``).

        An image URL is sent as trueai's ``sourceUrl`` / ``targetUrl``
        (``Dto/InsightFaceSwapDto.cs``), never inside ``sourceBase64``: trueai's
        ``FaceSwapService`` parses that field as base64 only and fails on a URL. new-api
        requires both ``sourceBase64`` and ``targetBase64`` (``RelaySwapFace``: code 4
        "sour_base64_and_target_base64_is_required", no task, no charge): on that answer
        the URLs are downloaded (streamed, within ``max_image_bytes``) and sent as data
        URIs, and this client does so up front from then on. Bytes, paths and data URIs
        always go in ``sourceBase64`` / ``targetBase64``.
        """
        common = self._common(state=state, notify_hook=notify_hook, account_filter=account_filter)
        whats = ["source image", "target image"]
        values = [
            await self._images.data_uri_or_url(source, whats[0]),
            await self._images.data_uri_or_url(target, whats[1]),
        ]
        if values[0] == values[1]:
            msg = "source and target must be different images"
            raise InvalidRequestError(msg)

        def body(sent: Sequence[str]) -> dict[str, Any]:
            fields: dict[str, Any] = {}
            for side, value in zip(("source", "target"), sent, strict=True):
                fields[f"{side}Url" if is_url(value) else f"{side}Base64"] = value
            return {**fields, **common}

        return await self._submit_inputs("/insight-face/swap", values, whats, body)

    async def edit(
        self,
        prompt: str,
        image: ImageInput,
        *,
        account_filter: AccountFilter | None = None,
        state: str | None = None,
        notify_hook: str | None = None,
    ) -> Submission:
        """Submit an Edit of *image* guided by *prompt* (``/submit/edits``, trueai's body).

        An image URL is sent as is: trueai's ``image`` takes a URL or base64.
        """
        require_text(prompt, "prompt")
        common = self._common(state=state, notify_hook=notify_hook, account_filter=account_filter)
        image_uri = await self._images.data_uri_or_url(image, "edit image")
        return await self._submit("/submit/edits", {"prompt": prompt, "image": image_uri, **common})

    async def video(
        self,
        prompt: str,
        *,
        image: ImageInput | None = None,
        end_image: ImageInput | None = None,
        motion: Motion | None = None,
        loop: bool | None = None,
        video_type: str | None = None,
        batch_size: int | None = None,
        extend: Task | str | None = None,
        index: int | None = None,
        account_filter: AccountFilter | None = None,
        state: str | None = None,
        notify_hook: str | None = None,
    ) -> Submission:
        """Submit ``/submit/video``: animate *image*, or extend video *extend* at *index* (0-3).

        Image URLs for *image* and *end_image* are sent as URLs (trueai's
        ``Dto/SubmitVideoDTO.cs`` takes URLs or base64); nothing is downloaded.
        """
        require_text(prompt, "prompt")
        if motion is not None and motion not in _MOTIONS:
            msg = f'motion must be "low" or "high", got {motion!r}'
            raise InvalidRequestError(msg)
        if batch_size is not None and batch_size not in {1, 2, 4}:
            msg = f"batch_size must be 1, 2 or 4, got {batch_size!r}"
            raise InvalidRequestError(msg)
        if extend is not None and (index is None or not 0 <= index <= 3):
            msg = "extending a video needs index= between 0 and 3"
            raise InvalidRequestError(msg)
        if extend is None and image is None:
            msg = "video needs image= (the first frame), or extend= a video task"
            raise InvalidRequestError(msg)
        common = self._common(state=state, notify_hook=notify_hook, account_filter=account_filter)
        body = {
            "prompt": prompt,
            "image": (
                await self._images.data_uri_or_url(image, "first frame")
                if image is not None
                else None
            ),
            "endImage": (
                await self._images.data_uri_or_url(end_image, "last frame")
                if end_image is not None
                else None
            ),
            "motion": motion,
            "loop": loop,
            "videoType": video_type,
            "batchSize": batch_size,
            "action": "extend" if extend is not None else None,
            "taskId": task_id_of(extend) if extend is not None else None,
            "index": index if extend is not None else None,
            **common,
        }
        return await self._submit("/submit/video", body)

    async def upload(self, images: Sequence[ImageInput]) -> list[str]:
        """Upload images to the proxy's Discord channel and return their URLs.

        The route uploads bytes, so an image URL is downloaded (streamed, within
        ``max_image_bytes``) and sent as a data URI.
        """
        images = cast(Sequence[ImageInput], as_image_list(images))
        if not images:
            msg = "upload needs at least one image"
            raise InvalidRequestError(msg)
        encoded = await self._images.data_uris(images, "upload image")
        where = self._where("POST", "/submit/upload-discord-images")

        def parse(response: Response) -> list[str]:
            body = read_body(response, where)
            if body is None:
                msg = f"{where}: empty answer"
                raise DecodeError(msg, status=response.status)
            return _upload_urls(body, where, response.status)

        return await self._request(
            "POST",
            "/submit/upload-discord-images",
            parse,
            json={"base64Array": encoded},
            kind=RequestKind.SUBMIT,
        )

    async def submit(self, path: str, body: Mapping[str, Any]) -> Submission:
        """Send any submit route with a raw JSON body (the escape hatch).

        *path* is relative to ``/mj``: ``"/submit/retexture"`` or ``"submit/retexture"``.
        The body is sent as given, except that None values are dropped.
        """
        path = "/" + require_text(path, "path").strip().lstrip("/")
        if path.startswith("/mj/"):
            path = path[len("/mj") :]
        if not isinstance(cast(object, body), Mapping):
            msg = "body must be a mapping"
            raise InvalidRequestError(msg)
        return await self._submit(path, body)


def _refuses_urls(error: APIError) -> bool:
    """A validation refusal (code 4) that asks for base64: the route takes no URLs here."""
    if isinstance(error, ServerError | RateLimitError | QueueFullError | TaskNotFoundError):
        return False
    return error.code == 4 and "base64" in (error.description or "").lower()


def _upload_urls(body: object, where: str, status: int) -> list[str]:
    """An upload answer: ``result`` is a list of URLs."""
    if not isinstance(body, Mapping):
        msg = f"{where}: expected a JSON object, got {body_preview(body)}"
        raise DecodeError(msg, status=status, body=body)
    code = body.get("code")
    result = body.get("result")
    if code != 1 or not isinstance(result, list):
        if code == 1:
            msg = f"{where}: accepted but no URL list in {body_preview(body)}"
            raise DecodeError(msg, status=status, code=1, body=body)
        submission_or_raise(body, where, status)
        msg = f"{where}: expected a URL list, got {body_preview(body)}"
        raise DecodeError(msg, status=status, body=body)
    return [str(url) for url in result if isinstance(url, str)]
