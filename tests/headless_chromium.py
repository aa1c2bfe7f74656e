"""Load a page in headless Chromium over the DevTools protocol: console errors, broken images, a screenshot.

Plain Chromium (Debian's `chromium` package) and the standard library only: the DevTools protocol runs over a
websocket, and the few lines of RFC 6455 framing a client needs (masked text frames out, unmasked frames
in) are below, so the test needs no browser-driver package and no browser download.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import urlparse

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


class _WebSocket:
    """A blocking websocket client: enough for the DevTools protocol (text frames, no extensions)."""

    def __init__(self, url: str, timeout: float) -> None:
        parsed = urlparse(url)
        self.sock = socket.create_connection((parsed.hostname, parsed.port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET {parsed.path} HTTP/1.1\r\nHost: {parsed.hostname}:{parsed.port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        self.sock.sendall(request.encode())
        response = b""
        while b"\r\n\r\n" not in response:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("DevTools closed the connection during the handshake")
            response += chunk
        head, self.buffer = response.split(b"\r\n\r\n", 1)
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise ConnectionError(f"websocket handshake refused: {head[:200]!r}")

    def send(self, text: str) -> None:
        payload = text.encode()
        mask = os.urandom(4)
        n = len(payload)
        if n < 126:
            header = struct.pack("!BB", 0x81, 0x80 | n)
        elif n < 1 << 16:
            header = struct.pack("!BBH", 0x81, 0x80 | 126, n)
        else:
            header = struct.pack("!BBQ", 0x81, 0x80 | 127, n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(header + mask + masked)

    def _read(self, n: int) -> bytes:
        while len(self.buffer) < n:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise ConnectionError("DevTools closed the connection")
            self.buffer += chunk
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def recv(self) -> str:
        message = b""
        while True:
            first, second = self._read(2)
            n = second & 0x7F
            if n == 126:
                n = struct.unpack("!H", self._read(2))[0]
            elif n == 127:
                n = struct.unpack("!Q", self._read(8))[0]
            mask = self._read(4) if second & 0x80 else b""
            payload = self._read(n)
            if mask:
                payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
            opcode = first & 0x0F
            if opcode == 0x8:
                raise ConnectionError("DevTools closed the websocket")
            if opcode in (0x9, 0xA):  # ping/pong: not sent by DevTools in practice; ignore
                continue
            message += payload
            if first & 0x80:
                return message.decode()

    def close(self) -> None:
        self.sock.close()


@dataclass
class PageLoad:
    """What the browser saw: console errors and exceptions, images that did not decode, a PNG screenshot."""

    errors: list[str] = field(default_factory=list)
    broken_images: list[str] = field(default_factory=list)
    image_count: int = 0
    screenshot: bytes = b""


class _Session:
    def __init__(self, ws: _WebSocket, session_id: str, deadline: float) -> None:
        self.ws, self.session_id, self.deadline = ws, session_id, deadline
        self.next_id = 0
        self.events: list[dict] = []

    def call(self, method: str, **params) -> dict:
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params}
        if self.session_id:
            message["sessionId"] = self.session_id
        self.ws.send(json.dumps(message))
        while True:
            reply = self._next()
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str) -> dict:
        for event in self.events:
            if event.get("method") == method:
                return event
        while True:
            event = self._next()
            self.events.append(event)
            if event.get("method") == method:
                return event

    def _next(self) -> dict:
        if time.monotonic() > self.deadline:
            raise TimeoutError("headless Chromium did not answer in time")
        return json.loads(self.ws.recv())


def load_page(url: str, *, width: int = 1100, height: int = 1400, timeout: float = 120.0) -> PageLoad:
    """Open `url` in a fresh headless Chromium, wait for `load`, and report what went wrong on the page."""
    if CHROMIUM is None:
        raise FileNotFoundError("no chromium on PATH")
    profile = tempfile.mkdtemp(prefix="tc-chromium-")
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
               "--no-first-run", "--no-default-browser-check", "--remote-debugging-port=0",
               f"--user-data-dir={profile}", "about:blank"]  # fmt: skip
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + timeout
    ws = None
    try:
        endpoint = None
        assert proc.stderr is not None
        while endpoint is None:  # Chromium prints its websocket address on stderr once it listens
            line = proc.stderr.readline()
            if not line and proc.poll() is not None:
                raise RuntimeError(f"chromium exited with {proc.returncode} before listening")
            found = re.search(r"DevTools listening on (ws://\S+)", line)
            endpoint = found.group(1) if found else None
            if time.monotonic() > deadline:
                raise TimeoutError("chromium did not open its DevTools port")
        # keep draining stderr (D-Bus warnings and the like) so a full pipe never blocks the browser
        threading.Thread(target=proc.stderr.read, daemon=True).start()
        ws = _WebSocket(endpoint, timeout=timeout)
        browser = _Session(ws, "", deadline)
        target = browser.call("Target.createTarget", url="about:blank")["targetId"]
        session_id = browser.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        page = _Session(ws, session_id, deadline)
        page.events = browser.events  # events of the page arrive on the same socket
        for domain in ("Page", "Runtime", "Log"):
            page.call(f"{domain}.enable")
        page.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1,
                  mobile=False)  # fmt: skip
        page.call("Page.navigate", url=url)
        page.wait_for("Page.loadEventFired")
        check = (
            "(() => { const imgs = Array.from(document.images); return JSON.stringify({count: imgs.length,"
            " broken: imgs.filter(i => !i.complete || i.naturalWidth === 0)"
            ".map(i => i.alt || i.src.slice(0, 60))"
            "}); })()"
        )
        images = json.loads(
            page.call("Runtime.evaluate", expression=check, returnByValue=True)["result"]["value"]
        )
        shot = page.call("Page.captureScreenshot", format="png")["data"]
        result = PageLoad(broken_images=images["broken"], image_count=images["count"])
        result.screenshot = base64.b64decode(shot)
        for event in page.events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                result.errors.append(
                    " ".join(str(a.get("value", a.get("description"))) for a in params["args"])
                )
            elif method == "Runtime.exceptionThrown":
                details = params["exceptionDetails"]
                result.errors.append(
                    details.get("exception", {}).get("description") or details.get("text", "")
                )
            elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
                result.errors.append(params["entry"].get("text", "error"))
        return result
    finally:
        if ws is not None:
            ws.close()
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(profile, ignore_errors=True)
