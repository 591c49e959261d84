"""An asyncio script: imagine one prompt, upscale all four images, download them.

    MJ_BASE_URL=https://your-proxy MJ_API_KEY=... python examples/asyncio_script.py "a red fox"

Without a proxy, try it against the simulator: ``mjasync simulator --time-scale 0.05``
in one terminal and ``MJ_BASE_URL=http://127.0.0.1:8080`` here.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import mjasync


def show(task: mjasync.Task) -> None:
    """Print one progress line per changed snapshot."""
    print(f"  {task.id} {task.action} {task.status} {task.progress or 0}%")


async def main(
    prompt: str,
    out: str | Path = "out",
    *,
    base_url: str | None = None,
    api_key: str | None = None,
    poll: mjasync.PollPolicy | None = None,
) -> list[Path]:
    """Imagine *prompt*, upscale U1..U4 concurrently and save all five images in *out*."""
    async with mjasync.Client(base_url, api_key, poll=poll) as mj:
        submission = await mj.imagine(prompt)
        print(f"imagine task {submission.task_id} submitted")
        grid = await mj.await_task(submission, on_progress=show)
        upscales = await mj.upscale_all(grid, on_progress=show)
        # Download at once: result URLs expire.
        return [await mj.download(task, out) for task in [grid, *upscales]]


if __name__ == "__main__":
    saved = asyncio.run(main(" ".join(sys.argv[1:]) or "a red fox in the snow, watercolor"))
    print("\n".join(f"saved {path}" for path in saved))
