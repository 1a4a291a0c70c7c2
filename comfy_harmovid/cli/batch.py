"""``harmovid batch``: run an API-format workflow on ComfyUI servers for many input files."""

import argparse
import sys
from pathlib import Path

from tqdm import tqdm

from ..batch import DONE, BatchConfig, BatchEvent, collect_inputs, load_api_workflow, parse_assignment, parse_target, run_batch
from ..errors import HarmoVidError

EXAMPLE = """example:
  harmovid batch workflows/api/harmonize_builtin.json clips/ --server 127.0.0.1:8188 --server gpu2:8188 \\
      --input-node 1.file --upload 2.file=beach.mp4 --set 12.filename_prefix='"harmovid/out"' --output results/
  # after a crash or Ctrl-C, the same command with --resume finishes the rest
"""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "batch", help="Run an API-format workflow on ComfyUI servers for many input files.",
        description="Upload each input to a ComfyUI server, queue the workflow with that input set, follow its "
                    "progress, download the outputs into OUTPUT/<input name>/ and record every job in a manifest.",
        epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("workflow", type=Path, help="API-format workflow JSON (ComfyUI: Workflow > Export (API)).")
    parser.add_argument("inputs", nargs="+", type=Path, help="Input files, or folders whose media files are all used.")
    parser.add_argument("--server", action="append", default=[], metavar="URL",
                        help="ComfyUI server, e.g. 127.0.0.1:8188 or http://host:8188; repeat for several (default 127.0.0.1:8188).")
    parser.add_argument("--input-node", required=True, metavar="NODE.INPUT",
                        help="The node input that gets each uploaded file, e.g. 1.file for a Load Video node with id 1.")
    parser.add_argument("--set", action="append", default=[], dest="overrides", metavar="NODE.INPUT=VALUE",
                        help="Set a node input for every job; VALUE is JSON when it parses (42, 0.5, true, \"text\"), else text.")
    parser.add_argument("--upload", action="append", default=[], metavar="NODE.INPUT=FILE",
                        help="Upload FILE once per server and set it on NODE.INPUT for every job (e.g. the background clip).")
    parser.add_argument("--match", action="append", default=[], metavar="NODE.INPUT=FOLDER",
                        help="For each input, also upload the file of the same name in FOLDER to NODE.INPUT (e.g. each "
                             "processed clip's original for Lighting Deflicker, or each person's own background).")
    parser.add_argument("--output", type=Path, default=Path("harmovid-batch"), help="Output folder (default: harmovid-batch).")
    parser.add_argument("--manifest", type=Path, help="Manifest (JSON lines) path (default: OUTPUT/manifest.jsonl).")
    parser.add_argument("--resume", action="store_true", help="Continue the batch in the manifest, skipping finished inputs.")
    parser.add_argument("--overwrite", action="store_true", help="Replace output files that already exist.")
    parser.add_argument("--per-server", type=int, default=2, metavar="N", help="Jobs in flight per server (default 2).")
    parser.add_argument("--retries", type=int, default=3, help="Extra attempts for a job whose server fails (default 3).")
    parser.add_argument("--backoff", type=float, default=1.0, metavar="SECONDS",
                        help="First wait before retrying a failed server; doubles each time up to 30 s (default 1).")
    parser.add_argument("--server-grace", type=float, default=10.0, metavar="SECONDS",
                        help="How long a job waits for a dropped server to come back before moving elsewhere (default 10).")
    parser.add_argument("--server-wait", type=float, default=300.0, metavar="SECONDS",
                        help="How long queued jobs wait while no server answers (e.g. all restarting) before they fail "
                             "(default 300).")
    parser.add_argument("--job-timeout", type=float, default=3600.0, metavar="SECONDS", help="Give up on one job after this long (default 3600).")
    parser.add_argument("--max-output-mb", type=float, default=4096.0, help="Refuse output files larger than this (default 4096).")
    parser.set_defaults(func=run)


def _positive(value, name):
    if value <= 0:
        raise HarmoVidError(f"{name} must be positive, got {value}.")
    return value


def _match(text: str):
    assignment = parse_assignment(text)
    folder = Path(str(assignment.value)).expanduser()
    if not folder.is_dir():
        raise HarmoVidError(f"--match {text}: {folder} is not a folder.")
    return parse_target(assignment.target), folder.resolve()


def _upload(text: str):
    assignment = parse_assignment(text)
    path = Path(str(assignment.value)).expanduser()
    if not path.is_file():
        raise HarmoVidError(f"--upload {text}: {path} is not a file.")
    return parse_target(assignment.target), path.resolve()


class _Display:
    """Terminal output for the runner's events: an overall bar and one bar per running job."""

    def __init__(self):
        self.overall = None
        self.bars = {}
        self.free_positions = []
        self.down = set()

    def __call__(self, event: BatchEvent) -> None:
        if event.kind == "start":
            self.overall = tqdm(total=event.data["total"], initial=event.data["skipped"], desc="batch", unit="clip",
                                file=sys.stderr, dynamic_ncols=True, disable=None, position=0)
            if event.data["skipped"]:
                tqdm.write(f"resuming: {event.data['skipped']} input(s) already done", file=sys.stderr)
        elif event.kind == "job_started":
            position = self.free_positions.pop(0) if self.free_positions else len(self.bars) + 1
            self.close_bar(event.job)
            bar = tqdm(total=100, desc=f"{event.job} @ {event.data['server']}", file=sys.stderr, dynamic_ncols=True,
                       disable=None, position=position, leave=False, bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}")
            self.bars[event.job] = (bar, position)
        elif event.kind == "job_progress" and event.job in self.bars:
            bar = self.bars[event.job][0]
            bar.n = int(round(event.data["fraction"] * 100))
            bar.refresh()
        elif event.kind == "job_retry":
            self.close_bar(event.job)
            tqdm.write(f"{event.job}: {event.data['error']}; trying again (attempt {event.data['attempt'] + 1})", file=sys.stderr)
        elif event.kind == "job_finished":
            self.close_bar(event.job)
            record = event.data
            if record["status"] == DONE:
                tqdm.write(f"done   {event.job}: {', '.join(record['outputs'])}", file=sys.stderr)
            else:
                tqdm.write(f"{record['status']} {event.job}: {record['error']}", file=sys.stderr)
            if self.overall is not None:
                self.overall.update(1)
        elif event.kind == "server_down" and event.data["server"] not in self.down:
            self.down.add(event.data["server"])
            tqdm.write(f"server {event.data['server']} unavailable ({event.data['error']}); retrying it later", file=sys.stderr)
        elif event.kind == "server_up" and event.data["server"] in self.down:
            self.down.discard(event.data["server"])
            tqdm.write(f"server {event.data['server']} is back", file=sys.stderr)

    def close_bar(self, job) -> None:
        if job in self.bars:
            bar, position = self.bars.pop(job)
            bar.close()
            self.free_positions.append(position)
            self.free_positions.sort()

    def close(self) -> None:
        for job in list(self.bars):
            self.close_bar(job)
        if self.overall is not None:
            self.overall.close()


def run(args) -> int:
    workflow = load_api_workflow(args.workflow)
    config = BatchConfig(
        workflow=workflow,
        inputs=collect_inputs(args.inputs),
        servers=args.server or ["127.0.0.1:8188"],
        output_dir=args.output,
        input_target=parse_target(args.input_node),
        overrides=[parse_assignment(text) for text in args.overrides],
        uploads=[_upload(text) for text in args.upload],
        matched=[_match(text) for text in args.match],
        manifest=args.manifest,
        resume=args.resume,
        overwrite=args.overwrite,
        per_server=int(_positive(args.per_server, "--per-server")),
        retries=max(0, args.retries),
        backoff=_positive(args.backoff, "--backoff"),
        server_grace=max(0.0, args.server_grace),
        server_wait=max(0.0, args.server_wait),
        job_timeout=_positive(args.job_timeout, "--job-timeout"),
        max_output_bytes=int(_positive(args.max_output_mb, "--max-output-mb") * 1024 * 1024),
    )
    display = _Display()
    try:
        summary = run_batch(config, on_event=display)
    finally:
        display.close()
    print(f"{summary.done} done, {summary.failed} failed, {summary.skipped} already done; manifest: {summary.manifest}")
    return 0 if summary.failed == 0 else 1
