"""Image inputs: sniffed MIME types, data URIs, paths, URLs fetched by the client, PNG masks."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

import mjasync
from mjasync import InvalidRequestError, RetryPolicy, sniff_mime
from mjasync._images import to_data_uri
from mjasync.testing import submit_payload

PNG = b"\x89PNG\r\n\x1a\n" + bytes(24)
JPEG = b"\xff\xd8\xff\xdb" + bytes(24)
WEBP = b"RIFF\x24\x00\x00\x00WEBPVP8 " + bytes(24)
GIF87 = b"GIF87a" + bytes(24)
GIF89 = b"GIF89a" + bytes(24)


def b64(data: bytes) -> str:
    """Standard base64 text of *data*."""
    return base64.b64encode(data).decode()


@pytest.mark.parametrize(
    ("data", "mime"),
    [
        pytest.param(PNG, "image/png", id="png"),
        pytest.param(JPEG, "image/jpeg", id="jpeg"),
        pytest.param(WEBP, "image/webp", id="webp"),
        pytest.param(GIF87, "image/gif", id="gif87a"),
        pytest.param(GIF89, "image/gif", id="gif89a"),
        pytest.param(b"RIFF\x00\x00\x00\x00WAVEfmt ", None, id="riff-wave"),
        pytest.param(b"<svg xmlns='http://www.w3.org/2000/svg'/>", None, id="svg"),
        pytest.param(b"%PDF-1.7", None, id="pdf"),
        pytest.param(b"", None, id="empty"),
        pytest.param(b"\x89PN", None, id="truncated-png"),
    ],
)
def test_sniff_mime(data: bytes, mime: str | None) -> None:
    """The MIME type comes from magic bytes: PNG, JPEG, WEBP and GIF only."""
    assert sniff_mime(data) == mime


@pytest.mark.parametrize(
    ("data", "mime"),
    [(PNG, "image/png"), (JPEG, "image/jpeg"), (WEBP, "image/webp"), (GIF89, "image/gif")],
)
async def test_bytes_become_a_data_uri_with_the_sniffed_mime(data: bytes, mime: str) -> None:
    """Raw bytes (and bytearray, memoryview) become data:<sniffed mime>;base64,..."""
    expected = f"data:{mime};base64,{b64(data)}"

    assert await to_data_uri(data) == expected
    assert await to_data_uri(bytearray(data)) == expected
    assert await to_data_uri(memoryview(data)) == expected


async def test_data_uri_is_re_encoded_with_the_sniffed_mime() -> None:
    """A data URI that lies about its type is re-labelled with the sniffed MIME type."""
    lying = f"data:image/png;base64,{b64(JPEG)}"

    assert await to_data_uri(lying) == f"data:image/jpeg;base64,{b64(JPEG)}"


async def test_data_uri_with_generic_type_is_labelled() -> None:
    """A data:application/octet-stream URI holding a WEBP becomes image/webp."""
    generic = f"  DATA:application/octet-stream;base64,{b64(WEBP)}  "

    assert await to_data_uri(generic) == f"data:image/webp;base64,{b64(WEBP)}"


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("data:image/png,rawtext", id="not-base64"),
        pytest.param("data:image/png;base64,***", id="bad-base64"),
        pytest.param(f"data:image/png;base64,{b64(b'hello world')}", id="not-an-image"),
        pytest.param("data:image/png;base64,", id="empty-payload"),
        pytest.param(b64(PNG), id="bare-base64"),
        pytest.param("picture.png", id="relative-name"),
    ],
)
async def test_bad_strings_are_refused(value: str) -> None:
    """Strings that are neither a valid image data URI nor a URL raise InvalidRequestError."""
    with pytest.raises(InvalidRequestError):
        await to_data_uri(value)


async def test_path_input(tmp_path: Path) -> None:
    """A Path is read and sniffed (the suffix is ignored)."""
    image = tmp_path / "actually-a-jpeg.png"
    image.write_bytes(JPEG)

    assert await to_data_uri(image) == f"data:image/jpeg;base64,{b64(JPEG)}"


@pytest.mark.parametrize(
    "name",
    [pytest.param("missing.png", id="missing"), pytest.param(".", id="directory")],
)
async def test_unreadable_paths_are_refused(tmp_path: Path, name: str) -> None:
    """A missing file or a directory raises InvalidRequestError naming the path."""
    with pytest.raises(InvalidRequestError, match=r"not found|directory"):
        await to_data_uri(tmp_path / name)


async def test_path_with_non_image_content_is_refused(tmp_path: Path) -> None:
    """A file that is not an image raises InvalidRequestError."""
    text = tmp_path / "notes.png"
    text.write_text("not an image")

    with pytest.raises(InvalidRequestError, match="not a PNG"):
        await to_data_uri(text)


@pytest.mark.parametrize(
    ("data", "ok"),
    [
        pytest.param(PNG, True, id="png"),
        pytest.param(JPEG, False, id="jpeg"),
        pytest.param(GIF89, False, id="gif"),
    ],
)
async def test_png_only_for_masks(data: bytes, ok: bool) -> None:
    """png_only accepts PNG and refuses every other image type."""
    if ok:
        assert (await to_data_uri(data, png_only=True)).startswith("data:image/png;base64,")
    else:
        with pytest.raises(InvalidRequestError, match="must be a PNG"):
            await to_data_uri(data, png_only=True)


async def test_url_without_downloader_is_refused() -> None:
    """A URL needs a downloader; without one it raises InvalidRequestError."""
    with pytest.raises(InvalidRequestError, match="downloader"):
        await to_data_uri("https://img.test/a.png")


def image_app(hits: list[str]) -> web.Application:
    """An app serving a JPEG, a PNG, a text file, a 404 and a big image."""

    async def serve(request: web.Request) -> web.Response:
        hits.append(request.path)
        assert "Authorization" not in request.headers  # the key stays with the proxy
        bodies = {
            "/photo.png": (JPEG, "image/png"),
            "/mask.png": (PNG, "image/png"),
            "/notes.txt": (b"hello", "text/plain"),
            "/big.png": (PNG + bytes(4096), "image/png"),
        }
        if request.path not in bodies:
            return web.Response(status=404)
        body, content_type = bodies[request.path]
        return web.Response(body=body, content_type=content_type)

    app = web.Application()
    app.router.add_get("/{name}", serve)
    return app


async def test_upload_and_mask_urls_are_downloaded() -> None:
    """Routes that need bytes download URL images, sniff them and send data URIs (mask: PNG)."""
    hits: list[str] = []
    sent: list[object] = []

    async def proxy(request: web.Request) -> web.Response:
        sent.append(await request.json())
        if request.path.endswith("upload-discord-images"):
            return web.json_response({"code": 1, "result": ["https://cdn.test/u.png"]})
        return web.json_response(submit_payload("1"))

    app = image_app(hits)
    app.router.add_post("/mj/submit/{kind}", proxy)

    async with TestServer(app) as server, mjasync.Client(str(server.make_url("/")), "k") as mj:
        await mj.upload([str(server.make_url("/photo.png"))])
        await mj.modal("1", mask=str(server.make_url("/mask.png")))

    assert sent == [
        {"base64Array": [f"data:image/jpeg;base64,{b64(JPEG)}"]},
        {"taskId": "1", "maskBase64": f"data:image/png;base64,{b64(PNG)}"},
    ]
    assert hits == ["/photo.png", "/mask.png"]


@pytest.mark.parametrize(
    ("path", "match"),
    [
        pytest.param("/notes.txt", "not a PNG", id="not-an-image"),
        pytest.param("/gone.png", "HTTP 404", id="404"),
        pytest.param("/big.png", "limit", id="too-big"),
    ],
)
async def test_bad_url_images_are_refused_before_submitting(path: str, match: str) -> None:
    """A URL that is no image, is missing or is too big raises before the submit is sent."""
    hits: list[str] = []
    submits: list[str] = []

    async def proxy(request: web.Request) -> web.Response:
        submits.append(request.path)
        return web.json_response(submit_payload("1"))

    app = image_app(hits)
    app.router.add_post("/mj/submit/{kind}", proxy)

    async with (
        TestServer(app) as server,
        mjasync.Client(
            str(server.make_url("/")),
            "k",
            max_image_bytes=1024,
            retry=RetryPolicy(attempts=1),
        ) as mj,
    ):
        with pytest.raises(InvalidRequestError, match=match):
            await mj.upload(str(server.make_url(path)))

    assert hits == [path]
    assert submits == []


@pytest.mark.parametrize("name", ["a-file/inside.png", "x" * 300 + ".png"])
async def test_paths_the_os_cannot_open_are_invalid_requests(tmp_path: Path, name: str) -> None:
    """A path under a regular file, or a name too long for the OS, is an InvalidRequestError."""
    (tmp_path / "a-file").write_bytes(PNG)
    with pytest.raises(InvalidRequestError, match="cannot be read"):
        await to_data_uri(tmp_path / name)
