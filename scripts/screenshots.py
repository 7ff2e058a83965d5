"""Regenerate the SVG screenshots in screenshots/ from the seeded scenes the tests use.

    python scripts/screenshots.py [OUT_DIR]

Each scene runs the real app headless (fixed size, fixed clock, no workers) and saves what it
shows with the app's own ``save_screenshot``.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "tui"))

from scenes import FixedClock, seed, seed_output, seed_workflows  # noqa: E402

from queuectl.queue import Queue  # noqa: E402
from queuectl.tui.app import QueueApp  # noqa: E402


async def _ready(app: QueueApp, pilot) -> None:
    for _ in range(200):
        await pilot.pause(0.02)
        if app.loads:
            break
    await pilot.pause()


async def scene(
    out: Path,
    name: str,
    size: tuple[int, int],
    keys: tuple[str, ...] = (),
    workflows: bool = False,
    output: bool = False,
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        clock = FixedClock()
        queue = Queue(str(Path(folder) / "queue.db"), clock=clock)
        seed(queue, clock)
        if workflows:  # named queues, dependencies, schedules
            seed_workflows(queue, clock)
        if output:  # what the running train-model printed so far
            seed_output(queue, clock)
        app = QueueApp(queue, workers=0, clock=clock, refresh_interval=3600)
        async with app.run_test(size=size) as pilot:
            await _ready(app, pilot)
            for key in keys:
                await pilot.press(key)
                await pilot.pause(0.1)
            await pilot.wait_for_scheduled_animations()
            await pilot.pause(0.2)
            app.save_screenshot(f"{name}.svg", path=str(out))
        queue.close()
    print(out / f"{name}.svg")


async def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    await scene(out, "main", (120, 36))
    await scene(out, "narrow", (80, 24))
    await scene(out, "enqueue", (120, 36), ("a", *"make release", "tab", *"x"))
    await scene(out, "config", (120, 36), ("c",))
    await scene(out, "details", (120, 36), ("shift+tab", "enter"))
    await scene(out, "narrow-dead", (80, 24), ("shift+tab",))
    await scene(out, "queues", (120, 36), ("Q", "down"), workflows=True)
    await scene(out, "schedules", (120, 36), ("S",), workflows=True)
    await scene(out, "filter", (120, 36), ("slash", *"deploy", "enter"), workflows=True)
    await scene(out, "output", (120, 36), ("tab", "l"), output=True)
    await scene(out, "edit", (120, 36), ("down", "e", *" --all"))
    await scene(out, "details-history", (120, 40), ("down", "down", "enter"))


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "screenshots"))
