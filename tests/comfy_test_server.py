"""A small in-test HTTP + websocket server that speaks ComfyUI's API (shapes from ComfyUI's server.py,
execution.py and main.py).

It runs in its own thread and event loop on 127.0.0.1. A queued prompt "executes" its nodes in
order, sending the websocket messages ComfyUI sends (execution_start, execution_cached, executing,
progress, executed, execution_success / execution_error, then executing with node None), and each
node whose class is in ``output_classes`` "saves" a file like core SaveVideo: its history output is
``{"images": [{"filename", "subfolder", "type": "output"}], "animated": [true]}``. The saved bytes
are ``b"processed:" +`` the bytes of the uploaded file the prompt names, so a test can check which
input produced which output. Knobs make it misbehave: fail a prompt, die in the middle of a job,
return hostile file names, or send huge files.
"""

import asyncio
import threading
import uuid
from typing import Callable, Dict, List, Optional, Tuple

from aiohttp import web

VIDEO_OBJECT_INFO = {
    "LoadVideo": {
        "input": {"required": {"file": [[], {"video_upload": True}]}},
        "input_order": {"required": ["file"]},
        "output": ["VIDEO"], "output_is_list": [False], "output_name": ["VIDEO"], "name": "LoadVideo",
        "display_name": "Load Video", "description": "", "python_module": "comfy_extras.nodes_video",
        "category": "image/video", "output_node": False,
    },
    "HarmoVidTestFilter": {
        "input": {"required": {"video": ["VIDEO", {}], "strength": ["FLOAT", {"default": 0.5, "min": 0, "max": 1}]}},
        "output": ["VIDEO"], "output_is_list": [False], "output_name": ["VIDEO"], "name": "HarmoVidTestFilter",
        "display_name": "Test Filter", "description": "", "python_module": "custom_nodes.test",
        "category": "HarmoVid", "output_node": False,
    },
    "SaveVideo": {
        "input": {"required": {"video": ["VIDEO", {}], "filename_prefix": ["STRING", {"default": "video/ComfyUI"}],
                               "format": [["auto", "mp4"], {"default": "auto"}], "codec": [["auto", "h264"], {"default": "auto"}]}},
        "output": [], "output_is_list": [], "output_name": [], "name": "SaveVideo", "display_name": "Save Video",
        "description": "", "python_module": "comfy_extras.nodes_video", "category": "image/video", "output_node": True,
    },
}

# A three-node API workflow over those classes: load the uploaded clip, filter it, save it.
SIMPLE_WORKFLOW = {
    "1": {"class_type": "LoadVideo", "inputs": {"file": "placeholder.mp4"}},
    "2": {"class_type": "HarmoVidTestFilter", "inputs": {"video": ["1", 0], "strength": 0.5}},
    "3": {"class_type": "SaveVideo", "inputs": {"video": ["2", 0], "filename_prefix": "video/ComfyUI",
                                                "format": "auto", "codec": "auto"}},
}


class ComfyTestServer:
    """Start with ``start()`` (returns the URL), stop with ``stop()``; ``kill()`` drops everything at once."""

    def __init__(
        self,
        object_info: Optional[dict] = None,
        output_classes=("SaveVideo",),
        step_delay: float = 0.01,
        fail: Optional[Callable[[dict], Optional[str]]] = None,
        die_on_job: Optional[int] = None,
        output_name: Optional[Callable[[int, dict], Tuple[str, str]]] = None,
        output_bytes: Optional[Callable[[bytes], bytes]] = None,
        view_delay: float = 0.0,
        port: int = 0,
    ):
        self.object_info = object_info if object_info is not None else VIDEO_OBJECT_INFO
        self.output_classes = set(output_classes)
        self.step_delay = step_delay
        self.fail = fail
        self.die_on_job = die_on_job
        self.output_name = output_name
        self.output_bytes = output_bytes or (lambda data: b"processed:" + data)
        self.port = port
        self.view_delay = view_delay  # seconds between 64 KiB chunks of a download
        self.view_started = threading.Event()
        self.deleted: List[str] = []  # prompt ids a client removed with POST /queue {"delete"}
        self.uploads: Dict[str, bytes] = {}
        self.files: Dict[Tuple[str, str], bytes] = {}
        self.history: Dict[str, dict] = {}
        self.prompts: List[dict] = []  # every accepted prompt, in order
        self.completed: List[str] = []  # prompt ids that finished successfully
        self.sockets: Dict[str, web.WebSocketResponse] = {}
        self.jobs_started = 0
        self._counter = 0
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._thread: Optional[threading.Thread] = None
        self._runner: Optional[web.AppRunner] = None
        self._closed = False

    # ---- life cycle -----------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> str:
        ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._serve, args=(ready,), daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("test ComfyUI server did not start within 10 s")
        return self.url

    def _serve(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._start_site())
        ready.set()
        self._loop.run_forever()
        self._loop.close()

    async def _start_site(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_get("/object_info", self._object_info)
        app.router.add_get("/prompt", self._queue_info)
        app.router.add_post("/prompt", self._post_prompt)
        app.router.add_get("/queue", self._get_queue)
        app.router.add_post("/queue", self._post_queue)
        app.router.add_post("/interrupt", self._interrupt)
        app.router.add_get("/history/{prompt_id}", self._history)
        app.router.add_post("/upload/image", self._upload)
        app.router.add_get("/view", self._view)
        app.router.add_get("/ws", self._websocket)
        self._queue: asyncio.Queue = asyncio.Queue()
        self._pending: List[str] = []
        self._running: Optional[str] = None
        self._worker = asyncio.get_running_loop().create_task(self._execute_loop())
        self._runner = web.AppRunner(app, shutdown_timeout=0.2, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]

    async def _shutdown(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._worker.cancel()
        for socket in list(self.sockets.values()):
            await socket.close()
        await self._runner.cleanup()

    def stop(self) -> None:
        """Shut down (waits for the server thread). Queue and history are lost, as in a restart."""
        if self._loop is None or not self._loop.is_running():
            return
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    kill = stop

    # ---- HTTP routes ----------------------------------------------------------------------
    async def _object_info(self, request):
        return web.json_response(self.object_info)

    def _queue_state(self):
        running = [[0, self._running, {}, {}, []]] if self._running else []
        pending = [[i + 1, pid, {}, {}, []] for i, pid in enumerate(self._pending)]
        return running, pending

    async def _queue_info(self, request):
        running, pending = self._queue_state()
        return web.json_response({"exec_info": {"queue_remaining": len(running) + len(pending)}})

    async def _get_queue(self, request):
        running, pending = self._queue_state()
        return web.json_response({"queue_running": running, "queue_pending": pending})

    async def _post_queue(self, request):
        body = await request.json()
        for prompt_id in body.get("delete", []):
            self.deleted.append(prompt_id)
            if prompt_id in self._pending:
                self._pending.remove(prompt_id)
        return web.Response(status=200)

    async def _interrupt(self, request):
        return web.Response(status=200)

    async def _post_prompt(self, request):
        body = await request.json()
        prompt = body.get("prompt")
        if not isinstance(prompt, dict):
            error = {"type": "no_prompt", "message": "No prompt provided", "details": "No prompt provided", "extra_info": {}}
            return web.json_response({"error": error, "node_errors": {}}, status=400)
        for node in prompt.values():
            if node.get("class_type") not in self.object_info:
                error = {"type": "invalid_prompt", "message": f"Cannot execute because node {node.get('class_type')} does not exist.",
                         "details": f"Node ID '#{node}'", "extra_info": {}}
                return web.json_response({"error": error, "node_errors": {}}, status=400)
        node_errors = {}
        for node_id, node in prompt.items():
            if node["class_type"] == "LoadVideo" and node["inputs"].get("file") not in self.uploads:
                node_errors[node_id] = {"errors": [{"type": "custom_validation_failed", "message": "Custom validation failed for node",
                                                    "details": f"file - Invalid video file: {node['inputs'].get('file')}", "extra_info": {}}],
                                        "dependent_outputs": [], "class_type": "LoadVideo"}
        if node_errors:
            error = {"type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed validation", "details": "", "extra_info": {}}
            return web.json_response({"error": error, "node_errors": node_errors}, status=400)
        prompt_id = str(uuid.uuid4())
        self._counter += 1
        self.prompts.append(prompt)
        self._pending.append(prompt_id)
        await self._queue.put((prompt_id, prompt, body.get("client_id")))
        return web.json_response({"prompt_id": prompt_id, "number": self._counter, "node_errors": {}})

    async def _history(self, request):
        prompt_id = request.match_info["prompt_id"]
        return web.json_response({prompt_id: self.history[prompt_id]} if prompt_id in self.history else {})

    async def _upload(self, request):
        post = await request.post()
        image = post.get("image")
        if image is None or not getattr(image, "filename", None):
            return web.Response(status=400)
        data = image.file.read()
        name = image.filename
        stem, dot, ext = name.rpartition(".")
        number = 1
        while name in self.uploads and self.uploads[name] != data:  # ComfyUI renames a different file with the same name
            name = f"{stem} ({number}).{ext}" if dot else f"{image.filename} ({number})"
            number += 1
        self.uploads[name] = data
        return web.json_response({"name": name, "subfolder": post.get("subfolder", ""), "type": post.get("type", "input")})

    async def _view(self, request):
        key = (request.query.get("subfolder", ""), request.query.get("filename", ""))
        if key not in self.files:
            return web.Response(status=404)
        data = self.files[key]
        self.view_started.set()
        if not self.view_delay:
            return web.Response(body=data, content_type="application/octet-stream")
        response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        response.content_length = len(data)
        await response.prepare(request)
        for start in range(0, len(data), 1 << 16):
            await response.write(data[start:start + (1 << 16)])
            await asyncio.sleep(self.view_delay)
        await response.write_eof()
        return response

    async def _websocket(self, request):
        socket = web.WebSocketResponse()
        await socket.prepare(request)
        sid = request.query.get("clientId") or uuid.uuid4().hex
        self.sockets[sid] = socket
        running, pending = self._queue_state()
        await socket.send_json({"type": "status", "data": {"status": {"exec_info": {"queue_remaining": len(running) + len(pending)}}, "sid": sid}})
        try:
            async for _ in socket:
                pass
        finally:
            if self.sockets.get(sid) is socket:
                del self.sockets[sid]
        return socket

    # ---- execution --------------------------------------------------------------------------
    async def _send(self, client_id, kind: str, data: dict) -> None:
        socket = self.sockets.get(client_id)
        if socket is not None and not socket.closed:
            try:
                await socket.send_json({"type": kind, "data": data})
                await socket.send_bytes(b"\x00\x00\x00\x01fake-preview")  # previews come as binary frames
            except ConnectionError:
                pass

    async def _execute_loop(self) -> None:
        while True:
            prompt_id, prompt, client_id = await self._queue.get()
            if prompt_id not in self._pending:
                continue  # deleted from the queue
            self._pending.remove(prompt_id)
            self._running = prompt_id
            self.jobs_started += 1
            if self.die_on_job is not None and self.jobs_started == self.die_on_job:
                asyncio.get_running_loop().create_task(self._die())
                return
            await self._execute(prompt_id, prompt, client_id)
            self._running = None

    async def _die(self) -> None:
        await asyncio.sleep(self.step_delay * 2)
        await self._shutdown()

    async def _execute(self, prompt_id: str, prompt: dict, client_id) -> None:
        messages = []

        async def message(kind, data):
            data = {**data, "prompt_id": prompt_id, "timestamp": 0}
            messages.append([kind, data])
            await self._send(client_id, kind, data)

        await message("execution_start", {})
        await message("execution_cached", {"nodes": []})
        uploaded = b"".join(self.uploads.get(v, b"") for n in prompt.values() for v in n["inputs"].values() if isinstance(v, str))
        failure = self.fail(prompt) if self.fail else None
        outputs = {}
        for node_id, node in prompt.items():
            await self._send(client_id, "executing", {"node": node_id, "display_node": node_id, "prompt_id": prompt_id})
            for step in (1, 2):
                await asyncio.sleep(self.step_delay)
                await self._send(client_id, "progress", {"value": step, "max": 2, "prompt_id": prompt_id, "node": node_id})
            if failure and node["class_type"] not in ("LoadVideo",):
                await message("execution_error", {
                    "node_id": node_id, "node_type": node["class_type"], "executed": [], "exception_message": failure,
                    "exception_type": "comfy_harmovid.errors.HarmoVidError", "traceback": ["..."], "current_inputs": {},
                    "current_outputs": []})
                break
            if node["class_type"] in self.output_classes:
                number = len(self.files) + 1
                subfolder, filename = self.output_name(number, prompt) if self.output_name else ("video", f"ComfyUI_{number:05}_.mp4")
                self.files[(subfolder, filename)] = self.output_bytes(uploaded)
                ui = {"images": [{"filename": filename, "subfolder": subfolder, "type": "output"}], "animated": [True]}
                outputs[node_id] = ui
                await self._send(client_id, "executed", {"node": node_id, "display_node": node_id, "output": ui, "prompt_id": prompt_id})
        else:
            await message("execution_success", {})
        self.history[prompt_id] = {
            "prompt": [0, prompt_id, prompt, {"client_id": client_id}, list(outputs)],
            "outputs": outputs,
            "status": {"status_str": "error" if failure else "success", "completed": not failure, "messages": messages},
            "meta": {},
        }
        if not failure:
            self.completed.append(prompt_id)
        await self._send(client_id, "executing", {"node": None, "prompt_id": prompt_id})
