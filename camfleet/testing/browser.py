"""How tests and benchmarks start Debian's headless Chromium through Playwright.

Playwright's own browser download does not work on these machines, so it drives the system
``chromium`` package; the flags keep it from reaching the network or doing background work.
"""

from __future__ import annotations

from typing import Any

CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


def launch(playwright: Any) -> Any:
    """A headless Chromium browser from a started ``sync_playwright()``."""
    return playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
