"""Run one API workflow for many input files across one or more ComfyUI servers.

Each server gets ``per_server`` workers that take jobs from one shared queue. A job uploads its
input, queues the workflow with the input's name set on ``input_target``, follows the websocket
until the server reports the end, downloads the outputs and appends a manifest record. When a
server cannot be reached, drops the websocket for longer than ``server_grace`` seconds, or loses a
job (restarted), the job goes back on the queue for any server (up to ``retries`` times) and the
server rests with exponential backoff. A job the server fails is recorded and the batch goes on.
"""

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import aiohttp

from ..errors import HarmoVidError
from .client import (
    ComfyClient, JobFailed, ServerUnavailable, describe_execution_error, history_error, output_items, parse_message,
)
from .manifest import DONE, FAILED, INTERRUPTED, Manifest
from .outputs import DEFAULT_MAX_BYTES, JobOutputs
from .workflow import (
    ApiWorkflow, Assignment, apply_assignments, check_inputs_known, check_target, invalid_choices, missing_classes,
)

INPUT_EXTENSIONS = {
    ".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v", ".gif", ".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff",
}


@dataclass
class BatchConfig:
    workflow: ApiWorkflow
    inputs: Sequence[Path]
    servers: Sequence[str]
    output_dir: Path
    input_target: Assignment
    overrides: Sequence[Assignment] = ()
    uploads: Sequence[Tuple[Assignment, Path]] = ()  # files uploaded once per server, same for every job
    matched: Sequence[Tuple[Assignment, Path]] = ()  # (target, folder): each job also uploads the folder's file of the same name
    manifest: Optional[Path] = None  # default: output_dir / "manifest.jsonl"
    resume: bool = False
    overwrite: bool = False
    per_server: int = 1
    retries: int = 3
    backoff: float = 1.0
    max_backoff: float = 30.0
    server_grace: float = 10.0
    server_wait: float = 300.0  # how long queued jobs wait while no server answers before they fail
    job_timeout: float = 3600.0
    poll_interval: float = 2.0
    request_timeout: float = 30.0
    max_output_bytes: int = DEFAULT_MAX_BYTES

    @property
    def file_targets(self) -> List[Assignment]:
        """The inputs that get uploaded file names (set per job or per server, not from the workflow)."""
        return [self.input_target, *(t for t, _ in self.uploads), *(t for t, _ in self.matched)]

    @property
    def manifest_path(self) -> Path:
        return Path(self.manifest) if self.manifest else Path(self.output_dir) / "manifest.jsonl"


@dataclass
class BatchEvent:
    """What the runner reports: ``kind`` is one of start, job_started, job_progress, job_retry,
    job_finished, server_down, server_up."""

    kind: str
    job: Optional[str] = None
    data: Dict[str, Any] = field(default_factory=dict)


@dataclass
class BatchSummary:
    done: int
    failed: int
    skipped: int
    manifest: Path
    records: List[Dict[str, Any]]


@dataclass
class _Job:
    input: Path
    key: str
    partners: List[Tuple[Assignment, Path]] = field(default_factory=list)  # from BatchConfig.matched
    attempts: int = 0
    last_error: Optional[str] = None


def matching_file(folder: Path, path: Path) -> Optional[Path]:
    """The file in ``folder`` with the same name as ``path``, or else the same stem and a media extension."""
    same = Path(folder) / path.name
    if same.is_file():
        return same
    candidates = sorted(p for p in Path(folder).glob(f"{path.stem}.*") if p.suffix.lower() in INPUT_EXTENSIONS)
    return candidates[0] if candidates else None


def collect_inputs(paths: Sequence) -> List[Path]:
    """Files given directly, plus the media files (by extension) directly inside given folders."""
    found: List[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found.extend(sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")
                                and p.suffix.lower() in INPUT_EXTENSIONS))
        elif path.is_file():
            found.append(path)
        else:
            raise HarmoVidError(f"Input {path} does not exist. Give existing files or folders of clips.")
    unique = list(dict.fromkeys(p.resolve() for p in found))
    if not unique:
        raise HarmoVidError(f"No input files found in {', '.join(map(str, paths))} (looked for {', '.join(sorted(INPUT_EXTENSIONS))}).")
    return unique


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class _Server:
    def __init__(self, client: ComfyClient, config: BatchConfig):
        self.client = client
        self.config = config
        self.failures = 0
        self.down_until = 0.0
        self.fixed_names: Optional[List[Assignment]] = None
        self.upload_lock = asyncio.Lock()

    @property
    def up(self) -> bool:
        return self.failures == 0

    def mark_down(self) -> float:
        self.failures += 1
        self.fixed_names = None  # a restarted server may have lost its input folder
        delay = min(self.config.max_backoff, self.config.backoff * 2 ** (self.failures - 1))
        self.down_until = time.monotonic() + delay
        return delay

    def mark_up(self) -> None:
        self.failures = 0
        self.down_until = 0.0

    async def fixed_uploads(self) -> List[Assignment]:
        async with self.upload_lock:
            if self.fixed_names is None:
                names = []
                for target, path in self.config.uploads:
                    name = await self.client.upload(path)
                    names.append(Assignment(target.node_id, target.input_name, name))
                self.fixed_names = names
            return self.fixed_names


class BatchRunner:
    def __init__(self, config: BatchConfig, on_event: Optional[Callable[[BatchEvent], None]] = None):
        self.config = config
        self.on_event = on_event or (lambda event: None)
        self.manifest = Manifest(config.manifest_path)
        self.output_dir = Path(config.output_dir)
        self.records: List[Dict[str, Any]] = []
        self.unreachable_since: Optional[float] = None  # when the last answering server stopped answering

    # ---- planning -------------------------------------------------------------------------
    def plan(self) -> Tuple[List[_Job], int]:
        """The jobs still to do, and how many inputs the manifest shows as finished."""
        config = self.config
        for assignment in [*config.file_targets, *config.overrides]:
            check_target(config.workflow, assignment)
        for _, path in config.uploads:
            if not Path(path).is_file():
                raise HarmoVidError(f"--upload file {path} does not exist.")
        for _, folder in config.matched:
            if not Path(folder).is_dir():
                raise HarmoVidError(f"--match folder {folder} does not exist.")
        unmatched = [f"{path.name} (no match in {folder})" for path in config.inputs for _, folder in config.matched
                     if matching_file(folder, Path(path)) is None]
        if unmatched:
            raise HarmoVidError(f"Some inputs have no partner file: {', '.join(unmatched)}. Add the files, or leave those inputs out.")
        latest = self.manifest.latest()
        if latest and not config.resume:
            raise HarmoVidError(
                f"Manifest {self.manifest.path} already has {len(latest)} job(s). Pass --resume to continue "
                "that batch, or choose another --output folder or --manifest."
            )
        used_keys = {record.get("key") for record in latest.values()}
        jobs, skipped = [], 0
        for path in config.inputs:
            record = latest.get(str(path))
            if record and record.get("status") == DONE and all((self.output_dir / o).exists() for o in record.get("outputs", [])):
                skipped += 1
                continue
            key = record.get("key") if record and record.get("key") else self._new_key(path, used_keys)
            used_keys.add(key)
            partners = [(target, matching_file(folder, Path(path))) for target, folder in config.matched]
            jobs.append(_Job(Path(path), key, partners))
        return jobs, skipped

    @staticmethod
    def _new_key(path: Path, used: set) -> str:
        key, number = path.stem, 2
        while key in used:
            key, number = f"{path.stem}-{number}", number + 1
        return key

    async def check_servers(self, servers: List[_Server]) -> None:
        """Every server must answer and have every node class the workflow uses."""
        targets = [*self.config.file_targets, *self.config.overrides]
        for server in servers:
            try:
                info = await server.client.object_info()
            except ServerUnavailable as error:
                raise HarmoVidError(
                    f"ComfyUI server {server.client.url} is unreachable: {error}. Start it (python main.py --listen ...) "
                    "or leave out that --server."
                ) from None
            except JobFailed as error:
                raise HarmoVidError(f"{server.client.url} does not look like a ComfyUI server: {error}.") from None
            missing = missing_classes(self.config.workflow, info)
            if missing:
                raise HarmoVidError(
                    f"ComfyUI server {server.client.url} lacks node(s) {', '.join(missing)}. Install the node pack that "
                    "provides them there (for HarmoVid nodes: put comfy-harmovid in ComfyUI/custom_nodes) and restart it; "
                    "nothing was queued."
                )
            check_inputs_known(self.config.workflow, targets, info)
            invalid = invalid_choices(apply_assignments(self.config.workflow, self.config.overrides), info,
                                      skip=self.config.file_targets)
            if invalid:
                raise HarmoVidError(
                    f"ComfyUI server {server.client.url} does not have these values: {'; '.join(invalid)}. Choose one it "
                    "offers with --set NODE.INPUT=VALUE, put the missing model or file on that server, or give an input "
                    "file with --upload NODE.INPUT=FILE; nothing was queued."
                )

    # ---- running --------------------------------------------------------------------------
    async def run(self) -> BatchSummary:
        jobs, skipped = self.plan()
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as session:
            servers = [_Server(ComfyClient(url, session, self.config.request_timeout), self.config) for url in self.config.servers]
            await self.check_servers(servers)
            self.output_dir.mkdir(parents=True, exist_ok=True)
            self.on_event(BatchEvent("start", data={"total": len(jobs) + skipped, "skipped": skipped, "to_do": len(jobs)}))
            queue: asyncio.Queue = asyncio.Queue()
            for job in jobs:
                queue.put_nowait(job)
            workers = [asyncio.create_task(self._worker(server, servers, queue))
                       for server in servers for _ in range(max(1, self.config.per_server))]
            finished = asyncio.create_task(queue.join())
            try:
                # Workers only end by raising (a bug or an unwritable manifest): stop then, never hang.
                await asyncio.wait([finished, *workers], return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (finished, *workers):
                    task.cancel()
                await asyncio.gather(finished, *workers, return_exceptions=True)
            for worker in workers:
                if not worker.cancelled() and worker.exception() is not None:
                    raise worker.exception()
        done = sum(1 for r in self.records if r["status"] == DONE)
        return BatchSummary(done=done, failed=len(self.records) - done, skipped=skipped,
                            manifest=self.manifest.path, records=self.records)

    async def _worker(self, server: _Server, servers: List[_Server], queue: asyncio.Queue) -> None:
        while True:
            job = await self._next_job(server, servers, queue)
            try:
                await self._attempt(server, job, queue)
            finally:
                queue.task_done()

    async def _next_job(self, server: _Server, servers: List[_Server], queue: asyncio.Queue) -> _Job:
        """Wait until this server may take work (resting after failures, then answering a ping)."""
        while not server.up:
            await asyncio.sleep(max(0.0, server.down_until - time.monotonic()))
            try:
                await server.client.ping()
            except (ServerUnavailable, JobFailed) as error:
                delay = server.mark_down()
                self.on_event(BatchEvent("server_down", data={"server": server.client.url, "error": str(error), "retry_in": delay}))
                if not any(other.up for other in servers):
                    self._fail_queued_after_wait(queue, server, error)
                continue
            server.mark_up()
            self.unreachable_since = None
            self.on_event(BatchEvent("server_up", data={"server": server.client.url}))
        return await queue.get()

    def _fail_queued_after_wait(self, queue: asyncio.Queue, server: _Server, error: Exception) -> None:
        """No server answers: once that has lasted ``server_wait`` seconds, fail the queued jobs so the batch ends."""
        now = time.monotonic()
        if self.unreachable_since is None:
            self.unreachable_since = now
        if now - self.unreachable_since < self.config.server_wait:
            return
        while not queue.empty():
            job = queue.get_nowait()
            self._record(job, FAILED, server, None, [], None,
                         f"no server answered for {self.config.server_wait:g} s (last: {error}); run again with --resume")
            queue.task_done()

    def _requeue_or_fail(self, job: _Job, error: str, queue: asyncio.Queue, server: _Server) -> None:
        job.last_error = error
        if job.attempts > self.config.retries:
            self._record(job, FAILED, server, None, [], None, f"gave up after {job.attempts} attempts: {error}")
        else:
            self.on_event(BatchEvent("job_retry", job.key, {"server": server.client.url, "error": error, "attempt": job.attempts}))
            queue.put_nowait(job)

    def _record(self, job: _Job, status: str, server: _Server, prompt_id: Optional[str], outputs: List[str],
                started: Optional[float], error: Optional[str]) -> None:
        finished = time.time()
        record = {
            "input": str(job.input), "key": job.key, "status": status, "server": server.client.url,
            "matched": {target.target: str(path) for target, path in job.partners},
            "prompt_id": prompt_id, "outputs": outputs,
            "started": datetime.fromtimestamp(started, timezone.utc).isoformat(timespec="seconds") if started else None,
            "finished": _now(), "seconds": round(finished - started, 3) if started else None,
            "attempts": job.attempts,
            "error": error,
        }
        self.manifest.append(record)
        self.records.append(record)
        self.on_event(BatchEvent("job_finished", job.key, record))

    async def _attempt(self, server: _Server, job: _Job, queue: asyncio.Queue) -> None:
        started = time.time()
        job.attempts += 1
        outputs = JobOutputs(self.output_dir / job.key, overwrite=self.config.overwrite, max_bytes=self.config.max_output_bytes)
        prompt_id: Optional[str] = None
        self.on_event(BatchEvent("job_started", job.key, {"server": server.client.url, "input": str(job.input)}))
        try:
            fixed = await server.fixed_uploads()
            name = await server.client.upload(job.input)
            files = [Assignment(self.config.input_target.node_id, self.config.input_target.input_name, name)]
            for partner_target, partner in job.partners:
                files.append(Assignment(partner_target.node_id, partner_target.input_name, await server.client.upload(partner)))
            prompt = apply_assignments(self.config.workflow, [*self.config.overrides, *fixed, *files])
            client_id = uuid.uuid4().hex
            websocket = await server.client.websocket(client_id)
            try:
                prompt_id = await server.client.queue_prompt(prompt, client_id)
                try:
                    entry = await asyncio.wait_for(self._follow(server, websocket, client_id, prompt_id, job, len(prompt)),
                                                   self.config.job_timeout)
                except asyncio.TimeoutError:
                    await server.client.cancel(prompt_id)
                    raise JobFailed(f"no result after {self.config.job_timeout:g} s; the job was cancelled on the server "
                                    "(raise --job-timeout for long jobs)") from None
            finally:
                await websocket.close()
            reason = history_error(entry)
            if reason:
                raise JobFailed(reason)
            items = list(output_items(entry))
            if not items:
                raise JobFailed("the workflow finished but listed no output files; end it with a saving node such as Save Video")
            for _, item in items:
                _, staged = outputs.target(item.get("subfolder") or "", item["filename"])
                await server.client.download(item, staged, outputs)
            saved = [f"{job.key}/{relative.as_posix()}" for relative in outputs.commit()]
            server.mark_up()
            self._record(job, DONE, server, prompt_id, saved, started, None)
        except ServerUnavailable as error:
            delay = server.mark_down()
            self.on_event(BatchEvent("server_down", data={"server": server.client.url, "error": str(error), "retry_in": delay}))
            self._requeue_or_fail(job, str(error), queue, server)
        except (JobFailed, HarmoVidError) as error:
            self._record(job, FAILED, server, prompt_id, [], started, str(error))
        except asyncio.CancelledError:
            if prompt_id is not None:
                try:
                    await asyncio.wait_for(server.client.cancel(prompt_id), 5)
                except (asyncio.TimeoutError, asyncio.CancelledError):
                    pass
            self._record(job, INTERRUPTED, server, prompt_id, [], started, "the batch was interrupted")
            raise
        finally:
            outputs.discard()

    async def _follow(self, server: _Server, websocket, client_id: str, prompt_id: str, job: _Job, node_count: int) -> Dict[str, Any]:
        """Read the websocket until the prompt ends; return its history entry."""
        client = server.client
        cached, started, inner = set(), [], 0.0
        while True:
            try:
                message = await websocket.receive(timeout=self.config.poll_interval)
            except asyncio.TimeoutError:
                entry = await self._settled(client, prompt_id)
                if entry is not None:
                    return entry
                continue
            if message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.ERROR):
                websocket = await self._reconnect(client, client_id)
                entry = await self._settled(client, prompt_id)
                if entry is not None:
                    return entry
                continue
            if message.type != aiohttp.WSMsgType.TEXT:
                continue  # binary preview frames
            event = parse_message(message.data)
            if event is None:
                continue
            data = event.get("data") if isinstance(event.get("data"), dict) else {}
            if data.get("prompt_id") not in (None, prompt_id):
                continue  # another client's prompt
            kind = event["type"]
            if kind == "execution_error":
                raise JobFailed(describe_execution_error(data))
            if kind == "execution_interrupted":
                raise JobFailed("the job was interrupted on the server")
            if kind == "execution_cached":
                cached.update(map(str, data.get("nodes") or []))
            elif kind == "executing" and data.get("node") is None:
                if data.get("prompt_id") == prompt_id:
                    entry = await self._settled(client, prompt_id)
                    if entry is not None:
                        return entry
                continue
            elif kind == "executing":
                started.append(str(data["node"]))
                inner = 0.0
            elif kind == "progress" and isinstance(data.get("max"), (int, float)) and data["max"] > 0:
                inner = min(1.0, max(0.0, float(data.get("value") or 0) / data["max"]))
            else:
                continue
            done = len(cached) + max(len(started) - 1, 0) + inner
            self.on_event(BatchEvent("job_progress", job.key, {"fraction": min(done / max(node_count, 1), 1.0)}))

    async def _settled(self, client: ComfyClient, prompt_id: str) -> Optional[Dict[str, Any]]:
        """The history entry when the prompt has ended; None while it waits or runs.

        Asks the queue before the history: a prompt leaves the queue only after its history entry
        is written, so "in neither" means the server lost it (it restarted).
        """
        if await client.is_queued(prompt_id):
            return None
        entry = await client.history(prompt_id)
        if entry is None:
            raise ServerUnavailable(f"{client.url} no longer knows prompt {prompt_id} (did it restart?)")
        return entry

    async def _reconnect(self, client: ComfyClient, client_id: str):
        """Reopen the websocket, trying with backoff for up to ``server_grace`` seconds."""
        deadline = time.monotonic() + self.config.server_grace
        delay = min(self.config.backoff, 1.0)
        while True:
            try:
                return await client.websocket(client_id)
            except ServerUnavailable:
                if time.monotonic() + delay > deadline:
                    raise
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.config.max_backoff)


def run_batch(config: BatchConfig, on_event: Optional[Callable[[BatchEvent], None]] = None) -> BatchSummary:
    """Run the batch to the end (blocking). Ctrl-C cancels queued prompts, records them as
    interrupted, removes partial downloads, and raises KeyboardInterrupt."""
    return asyncio.run(BatchRunner(config, on_event).run())
