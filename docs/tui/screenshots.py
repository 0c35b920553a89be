"""Write an SVG screenshot of every tab of `appliance tui` at 80x24 for the docs:

    .venv/bin/python docs/tui/screenshots.py WORKSPACE [OUT_DIR] [TAB ...]

The workspace should hold real runs (a finished `appliance ladder --quick`); OUT_DIR defaults to docs/tui."""
from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from textual.worker import WorkerCancelled

from appliance.workspace import open_workspace
from tui.app import TABS, ApplianceApp

SEARCH_QUERY = "error code E08 heater fault"   # answered by the sample corpus


async def shoot(ws: Path, out: Path, tabs: list[str]) -> None:
    app = ApplianceApp(open_workspace(ws, create=False))
    async with app.run_test(size=(80, 24)) as pilot:
        for i, (tab, _, _) in enumerate(TABS):
            if tab not in tabs:
                continue
            await pilot.press(str(i + 1))
            if tab == "search":                      # a query, so the tab shows hits
                app.query_one("#search-query").value = SEARCH_QUERY
                app.query_one("#search-query").focus()
                await pilot.press("enter")
            for _ in range(3):
                try:
                    await app.workers.wait_for_complete()
                except WorkerCancelled:
                    pass
                await pilot.pause(0.3)
            app.save_screenshot(f"{i + 1}-{tab}.svg", str(out))
            print(out / f"{i + 1}-{tab}.svg")


if __name__ == "__main__":
    ws = Path(sys.argv[1])
    out = Path(sys.argv[2]) if len(sys.argv) > 2 else Path(__file__).parent
    asyncio.run(shoot(ws, out, sys.argv[3:] or [t for t, _, _ in TABS]))
