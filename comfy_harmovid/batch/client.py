"""A small asynchronous client for one ComfyUI server's HTTP and websocket API.

Shapes follow ComfyUI's server.py: POST /prompt {"prompt", "client_id"} -> {"prompt_id", "number",
"node_errors"} (HTTP 400 {"error", "node_errors"} when validation fails); GET /history/{id};
GET /queue; GET /view; POST /upload/image (multipart) -> {"name", "subfolder", "type"};
GET /object_info; websocket /ws?clientId= with JSON messages {"type", "data"} (binary frames are
previews). Two kinds of failure leave this module: ServerUnavailable (the server could not be
reached or lost the job: try again, maybe elsewhere) and JobFailed (the server refused or failed the
job: trying again would fail the same way).
"""

import asyncio
import json
from pathlib import Path
from typing import Any, Dict, Optional

import aiohttp

from .outputs import JobOutputs


class ServerUnavailable(Exception):
    """The server did not answer, answered with a server error, or lost the job."""


class JobFailed(Exception):
    """The server rejected or failed the job; the message says why."""


MAX_REPLY_BYTES = 64 * 1024 * 1024  # JSON replies and websocket messages (object_info of big installs is a few MB)
TRANSPORT_ERRORS = (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, asyncio.TimeoutError, ConnectionError)


def normalize_url(server: str) -> str:
    server = server.strip().rstrip("/")
    if "://" not in server:
        server = "http://" + server
    return server


def _shorten(text: Any, limit: int = 300) -> str:
    text = str(text).strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."


def describe_rejection(body: Dict[str, Any]) -> str:
    """A one-paragraph reason from /prompt's HTTP 400 body."""
    error = body.get("error") if isinstance(body, dict) else None
    parts = []
    if isinstance(error, dict):
        parts.append(_shorten(" ".join(str(error.get(k, "")) for k in ("message", "details")).strip()))
    elif error:
        parts.append(_shorten(error))
    node_errors = body.get("node_errors") if isinstance(body, dict) else None
    if isinstance(node_errors, dict):
        for node_id, info in node_errors.items():
            if not isinstance(info, dict):
                continue
            for item in info.get("errors", []) or []:
                if isinstance(item, dict):
                    detail = f"{item.get('message', '')}: {item.get('details', '')}".strip(": ")
                    parts.append(f"node {node_id} ({info.get('class_type', '?')}): {_shorten(detail)}")
    return "The server rejected the workflow: " + ("; ".join(p for p in parts if p) or "no reason given")


def describe_execution_error(data: Dict[str, Any]) -> str:
    return (
        f"node {data.get('node_id', '?')} ({data.get('node_type', '?')}) failed: "
        f"{data.get('exception_type', 'error')}: {_shorten(data.get('exception_message', ''), 600)}"
    )


class ComfyClient:
    """Requests to one server; every transport problem becomes ServerUnavailable."""

    def __init__(self, url: str, session: aiohttp.ClientSession, request_timeout: float = 30.0):
        self.url = normalize_url(url)
        self.ws_url = "ws" + self.url[len("http"):] if self.url.startswith("http") else self.url
        self.session = session
        self.timeout = aiohttp.ClientTimeout(total=request_timeout)

    def __repr__(self) -> str:
        return f"ComfyClient({self.url})"

    async def _json(self, method: str, path: str, **kwargs) -> Any:
        try:
            async with self.session.request(method, self.url + path, timeout=self.timeout, **kwargs) as response:
                if response.status >= 500:
                    raise ServerUnavailable(f"{self.url}{path} answered HTTP {response.status}")
                raw = bytearray()
                async for chunk in response.content.iter_chunked(1 << 20):
                    raw += chunk
                    if len(raw) > MAX_REPLY_BYTES:
                        raise JobFailed(f"{self.url}{path} sent a reply over {MAX_REPLY_BYTES} bytes; refusing it")
                text = raw.decode("utf-8", errors="replace")
                if response.status == 400 and path == "/prompt":
                    try:
                        body = json.loads(text)
                    except ValueError:
                        body = {"error": text}
                    raise JobFailed(describe_rejection(body))
                if response.status != 200:
                    raise JobFailed(f"{self.url}{path} answered HTTP {response.status}: {_shorten(text)}")
                return json.loads(text)
        except TRANSPORT_ERRORS as error:
            raise ServerUnavailable(f"cannot reach {self.url} ({type(error).__name__}: {error})") from None
        except (ValueError, aiohttp.ContentTypeError) as error:
            raise ServerUnavailable(f"{self.url}{path} sent something that is not JSON ({error})") from None

    async def object_info(self) -> Dict[str, Any]:
        info = await self._json("GET", "/object_info")
        if not isinstance(info, dict):
            raise ServerUnavailable(f"{self.url}/object_info is not a node list; is this a ComfyUI server?")
        return info

    async def ping(self) -> None:
        await self._json("GET", "/prompt")

    async def upload(self, path: Path) -> str:
        """Upload a file to the server's input folder; returns the name to give a loader node."""
        with open(path, "rb") as handle:
            form = aiohttp.FormData()
            form.add_field("image", handle, filename=Path(path).name, content_type="application/octet-stream")
            form.add_field("type", "input")
            form.add_field("subfolder", "")
            form.add_field("overwrite", "false")
            reply = await self._json("POST", "/upload/image", data=form)
        if not isinstance(reply, dict) or not isinstance(reply.get("name"), str):
            raise JobFailed(f"{self.url}/upload/image gave an unexpected reply: {_shorten(reply)}")
        subfolder = reply.get("subfolder") or ""
        return f"{subfolder}/{reply['name']}" if subfolder else reply["name"]

    async def queue_prompt(self, prompt: Dict[str, Any], client_id: str) -> str:
        reply = await self._json("POST", "/prompt", json={"prompt": prompt, "client_id": client_id})
        if not isinstance(reply, dict) or not isinstance(reply.get("prompt_id"), str):
            raise JobFailed(f"{self.url}/prompt gave an unexpected reply: {_shorten(reply)}")
        return reply["prompt_id"]

    async def history(self, prompt_id: str) -> Optional[Dict[str, Any]]:
        reply = await self._json("GET", f"/history/{prompt_id}")
        entry = reply.get(prompt_id) if isinstance(reply, dict) else None
        return entry if isinstance(entry, dict) else None

    async def is_queued(self, prompt_id: str) -> bool:
        reply = await self._json("GET", "/queue")
        if not isinstance(reply, dict):
            return False
        for key in ("queue_running", "queue_pending"):
            for item in reply.get(key) or []:
                if isinstance(item, (list, tuple)) and len(item) > 1 and item[1] == prompt_id:
                    return True
        return False

    async def cancel(self, prompt_id: str) -> None:
        """Best effort: drop the prompt from the queue and stop it if it is running."""
        for path, body in (("/queue", {"delete": [prompt_id]}), ("/interrupt", {"prompt_id": prompt_id})):
            try:
                async with self.session.post(self.url + path, json=body, timeout=aiohttp.ClientTimeout(total=3)):
                    pass
            except TRANSPORT_ERRORS:
                return

    async def websocket(self, client_id: str) -> aiohttp.ClientWebSocketResponse:
        try:
            return await self.session.ws_connect(
                f"{self.ws_url}/ws", params={"clientId": client_id}, timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=5),
                max_msg_size=MAX_REPLY_BYTES, heartbeat=None,
            )
        except (*TRANSPORT_ERRORS, aiohttp.WSServerHandshakeError) as error:
            raise ServerUnavailable(f"cannot open the websocket of {self.url} ({type(error).__name__}: {error})") from None

    async def download(self, item: Dict[str, Any], destination: Path, outputs: JobOutputs) -> None:
        """Stream one output file to ``destination``, never more than ``outputs.max_bytes`` bytes."""
        params = {"filename": item["filename"], "subfolder": item.get("subfolder") or "", "type": item.get("type") or "output"}
        name = f"{params['subfolder']}/{params['filename']}".lstrip("/")
        try:
            async with self.session.get(self.url + "/view", params=params, timeout=aiohttp.ClientTimeout(total=None, sock_read=120)) as response:
                if response.status >= 500:
                    raise ServerUnavailable(f"{self.url}/view answered HTTP {response.status} for {name}")
                if response.status != 200:
                    raise JobFailed(f"{self.url}/view answered HTTP {response.status} for output {name}")
                outputs.check_size(response.content_length, f"Output {name}")
                written = 0
                with open(destination, "wb") as handle:
                    async for chunk in response.content.iter_chunked(1 << 20):
                        written += len(chunk)
                        outputs.check_size(written, f"Output {name}")
                        handle.write(chunk)
                if response.content_length is not None and written != response.content_length:
                    raise ServerUnavailable(f"download of {name} from {self.url} stopped at {written} of {response.content_length} bytes")
        except TRANSPORT_ERRORS as error:
            raise ServerUnavailable(f"download of {name} from {self.url} failed ({type(error).__name__}: {error})") from None


def output_items(history_entry: Dict[str, Any]):
    """(node_id, item) for each file a history entry lists, whatever the key ("images", "gifs", ...).

    Files of type "temp" are left out: they are the previews nodes show in the editor (Preview Image,
    this pack's frame previews), kept in ComfyUI's temp folder, not results."""
    outputs = history_entry.get("outputs") or {}
    if not isinstance(outputs, dict):
        return
    for node_id, node_output in outputs.items():
        if not isinstance(node_output, dict):
            continue
        for value in node_output.values():
            if isinstance(value, list):
                for item in value:
                    if isinstance(item, dict) and "filename" in item and item.get("type") != "temp":
                        yield node_id, item


def history_error(history_entry: Dict[str, Any]) -> Optional[str]:
    """The reason a finished prompt failed, from its history status, or None if it succeeded."""
    status = history_entry.get("status") or {}
    if not isinstance(status, dict) or status.get("status_str") != "error":
        return None
    for message in status.get("messages") or []:
        if isinstance(message, (list, tuple)) and len(message) == 2 and isinstance(message[1], dict):
            if message[0] == "execution_error":
                return describe_execution_error(message[1])
            if message[0] == "execution_interrupted":
                return "the job was interrupted on the server"
    return "the server reports an error but gave no details"


def parse_message(raw: str) -> Optional[Dict[str, Any]]:
    try:
        message = json.loads(raw)
    except (ValueError, TypeError):
        return None
    return message if isinstance(message, dict) and isinstance(message.get("type"), str) else None
