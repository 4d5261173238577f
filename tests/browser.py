"""Headless Chromium driven over the DevTools protocol: open a page, wait for it, measure it, screenshot it.

``--dump-dom`` gives the page's text but not its layout, and an ellipsis ("Group: dapo_f…") is layout; this opens
the page in a real Chromium, evaluates JavaScript in it (the text of elements whose content is wider than their
box: cut) and takes screenshots. The websocket client is aiohttp's (a requirement of MLflow 3.x itself).
"""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars")

CUT_TEXTS_JS = """(() => {
  const cut = [];
  for (const el of document.querySelectorAll('.ag-root *')) {
    const text = (el.innerText || '').trim();
    const box = el.getBoundingClientRect();
    if (box.width < 2 || box.height < 2) continue;  // visually hidden labels (screen-reader text, colour names)
    if (text && el.children.length === 0 && el.scrollWidth > el.clientWidth + 1) cut.push(text);
  }
  return cut;
})()"""
"""Texts of the runs table's leaf elements whose content is wider than their box (shown with an ellipsis or clipped)."""


COUNT_FETCHES_JS = r"""(() => {
  window.__fetching = 0;
  const fetch = window.fetch;
  window.fetch = (...args) => {
    const url = String(args[0] && args[0].url ? args[0].url : args[0]);
    if (!/\/runs\/(search|get)/.test(url)) return fetch(...args);
    window.__fetching += 1;
    return fetch(...args).finally(() => { window.__fetching -= 1; });
  };
})()"""
"""Run before the page's own scripts: ``window.__fetching`` = requests for runs (``runs/search``, ``runs/get``) made
with ``fetch`` and not yet answered (other requests, such as the assistant's, may stay open)."""


def chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    return None


class Page:
    """One Chromium tab at ``width`` × ``height`` CSS pixels; use as a context manager."""

    def __init__(self, width: int = 1600, height: int = 1000):
        self.width, self.height = width, height

    def __enter__(self) -> Page:
        browser = chromium()
        if browser is None:
            raise RuntimeError("Chromium is not installed (apt-get install -y chromium)")
        self._profile = tempfile.TemporaryDirectory(prefix="lgrpo-chromium-", ignore_cleanup_errors=True)
        self._process = subprocess.Popen([browser, *CHROMIUM_FLAGS, f"--user-data-dir={self._profile.name}",
                                          f"--window-size={self.width},{self.height}", "--remote-debugging-port=0",
                                          "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = Path(self._profile.name) / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not (port_file.is_file() and len(port_file.read_text().split()) >= 2):
            if time.monotonic() > deadline or self._process.poll() is not None:
                self.__exit__()
                raise RuntimeError("Chromium did not open its DevTools port")
            time.sleep(0.1)
        port = port_file.read_text().split()[0]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as answer:
            targets = json.load(answer)
        self._ws_url = next(target["webSocketDebuggerUrl"] for target in targets if target["type"] == "page")
        self._loop = asyncio.new_event_loop()
        self._loop.run_until_complete(self._connect())
        self._id = 0
        return self

    async def _connect(self) -> None:
        import aiohttp

        self._session = aiohttp.ClientSession()
        self._ws = await self._session.ws_connect(self._ws_url, max_msg_size=0)

    async def _call(self, method: str, params: dict) -> dict:
        self._id += 1
        await self._ws.send_json({"id": self._id, "method": method, "params": params})
        while True:
            message = await self._ws.receive_json(timeout=120)
            if message.get("id") == self._id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]

    def call(self, method: str, **params) -> dict:
        return self._loop.run_until_complete(self._call(method, params))

    def open(self, url: str) -> None:
        """Load ``url``; the page counts its unanswered ``fetch`` requests in ``window.__fetching`` (see :meth:`settled`)."""
        if not getattr(self, "_counting", False):
            self.call("Page.enable")
            self.call("Page.addScriptToEvaluateOnNewDocument", source=COUNT_FETCHES_JS)
            self._counting = True
        self.call("Page.navigate", url=url)

    def settled(self, expression: str, timeout_s: float = 120.0) -> None:
        """Until ``expression`` is truthy and no request for runs is unanswered: a request the page starts when another
        ends (the MLflow UI fetches listed runs' parents after a search) starts in the same task, so the page's data is
        complete, not merely first drawn."""
        self.wait_for(f"window.__fetching === 0 && ({expression})", timeout_s)

    def evaluate(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression[:60]}...: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout_s: float = 120.0) -> None:
        """Until ``expression`` is truthy in the page (the UI renders asynchronously)."""
        deadline = time.monotonic() + timeout_s
        while not self.evaluate(expression):
            if time.monotonic() > deadline:
                raise TimeoutError(f"page never satisfied {expression!r}; text: {self.text()[:2000]!r}")
            time.sleep(0.5)

    def text(self) -> str:
        return self.evaluate("document.body ? document.body.innerText : ''") or ""

    def screenshot(self, png: Path) -> None:
        data = self.call("Page.captureScreenshot", format="png")["data"]
        png.write_bytes(base64.b64decode(data))

    def __exit__(self, *exc) -> None:
        if getattr(self, "_loop", None) is not None:
            async def close():
                await self._ws.close()
                await self._session.close()
            self._loop.run_until_complete(close())
            self._loop.close()
        self._process.terminate()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._profile.cleanup()
