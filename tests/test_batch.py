"""`harmovid batch` against the in-test ComfyUI server (tests/comfy_test_server.py), on 127.0.0.1 only."""

import asyncio
import json
import threading
import time
from pathlib import Path

import pytest

from comfy_harmovid.batch import (
    DONE, FAILED, INTERRUPTED, BatchConfig, BatchRunner, Manifest, UnsafeServerData, load_api_workflow, parse_assignment, parse_target,
    run_batch, safe_relative_path,
)
from comfy_harmovid.cli import main as harmovid_main
from comfy_harmovid.errors import HarmoVidError

from comfy_test_server import SIMPLE_WORKFLOW, VIDEO_OBJECT_INFO, ComfyTestServer


@pytest.fixture
def servers():
    started = []

    def start(**kwargs):
        server = ComfyTestServer(**kwargs)
        server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def clips(tmp_path):
    folder = tmp_path / "clips"
    folder.mkdir()
    for index in range(4):
        (folder / f"clip{index}.mp4").write_bytes(f"video-{index}".encode() * 10)
    (folder / "notes.txt").write_text("not a clip")
    return folder


@pytest.fixture
def workflow_file(tmp_path):
    path = tmp_path / "workflow_api.json"
    path.write_text(json.dumps(SIMPLE_WORKFLOW))
    return path


def config_for(clips, servers, output, **kwargs):
    options = dict(
        workflow=dict(SIMPLE_WORKFLOW), inputs=sorted(p.resolve() for p in clips.glob("*.mp4")),
        servers=[s.url for s in servers], output_dir=output, input_target=parse_target("1.file"),
        backoff=0.05, max_backoff=0.2, server_grace=0.3, server_wait=0.5, poll_interval=0.2, retries=3, request_timeout=5,
    )
    options.update(kwargs)
    return BatchConfig(**options)


def manifest_lines(path: Path):
    lines = path.read_text().splitlines()
    return [json.loads(line) for line in lines]  # every line must be a whole JSON record


def expected_output(clip: Path) -> bytes:
    return b"processed:" + clip.read_bytes()


def test_batch_spreads_inputs_over_two_servers_and_downloads_each_output(servers, clips, tmp_path):
    first, second = servers(step_delay=0.02), servers(step_delay=0.02)
    output = tmp_path / "out"
    events = []
    summary = run_batch(config_for(clips, [first, second], output, overrides=[parse_assignment("2.strength=0.8")]),
                        on_event=events.append)

    assert (summary.done, summary.failed) == (4, 0), f"expected 4 jobs done: {summary.records}"
    for key in ("clip0", "clip1", "clip2", "clip3"):
        fractions = [e.data["fraction"] for e in events if e.kind == "job_progress" and e.job == key]
        assert fractions and fractions == sorted(fractions) and 0.5 < fractions[-1] <= 1, f"{key} progress: {fractions}"
    records = manifest_lines(output / "manifest.jsonl")
    assert {r["status"] for r in records} == {DONE} and len(records) == 4
    assert {r["server"] for r in records} == {first.url, second.url}, "both servers should have taken jobs"
    for record in records:
        clip = Path(record["input"])
        assert record["prompt_id"] and record["seconds"] is not None and record["error"] is None
        assert len(record["outputs"]) == 1 and record["outputs"][0].startswith(f"{clip.stem}/video/")
        assert (output / record["outputs"][0]).read_bytes() == expected_output(clip), f"wrong output for {clip.name}"
    sent = first.prompts + second.prompts
    assert all(p["2"]["inputs"]["strength"] == 0.8 for p in sent), "--set must reach every queued prompt as a number"
    assert not list(output.rglob(".*partial*")), "no staging folders may stay behind"


def test_killed_server_jobs_finish_on_the_other_and_resume_completes_the_manifest(servers, clips, tmp_path):
    output = tmp_path / "out"
    # Alone, a server that dies during its second job leaves the batch incomplete ...
    dying = servers(step_delay=0.05, die_on_job=2)
    summary = run_batch(config_for(clips, [dying], output, retries=1))
    assert summary.done == 1 and summary.failed == 3, f"one job should finish before the server died: {summary.records}"
    failed = [r for r in manifest_lines(output / "manifest.jsonl") if r["status"] == FAILED]
    assert all("no server answered" in r["error"] or "gave up" in r["error"] for r in failed), failed

    # ... --resume on a healthy server redoes only the unfinished inputs and keeps the first output.
    first_record = next(r for r in manifest_lines(output / "manifest.jsonl") if r["status"] == DONE)
    kept = (output / first_record["outputs"][0]).read_bytes()
    healthy = servers()
    summary = run_batch(config_for(clips, [healthy], output, resume=True))
    assert (summary.done, summary.failed, summary.skipped) == (3, 0, 1), summary
    assert len(healthy.prompts) == 3, "the finished input must not be queued again"
    latest = Manifest(output / "manifest.jsonl").latest()
    assert len(latest) == 4 and all(r["status"] == DONE for r in latest.values()), latest
    assert (output / first_record["outputs"][0]).read_bytes() == kept


def test_server_killed_midway_batch_finishes_on_the_other_server(servers, clips, tmp_path):
    dying, healthy = servers(step_delay=0.05, die_on_job=2), servers(step_delay=0.05)
    output = tmp_path / "out"
    summary = run_batch(config_for(clips, [dying, healthy], output, per_server=1))
    assert (summary.done, summary.failed) == (4, 0), f"all jobs should finish on the healthy server: {summary.records}"
    for record in Manifest(output / "manifest.jsonl").latest().values():
        assert (output / record["outputs"][0]).read_bytes() == expected_output(Path(record["input"]))
    assert any(r["attempts"] == 2 and r["server"] == healthy.url for r in summary.records), "the lost job should be retried elsewhere"


def test_failed_job_is_recorded_and_the_rest_go_on(servers, clips, tmp_path):
    server = servers(fail=lambda prompt: "empty mask: nobody found in the clip" if "clip1" in prompt["1"]["inputs"]["file"] else None)
    output = tmp_path / "out"
    summary = run_batch(config_for(clips, [server], output))
    by_input = {Path(r["input"]).name: r for r in summary.records}
    assert by_input["clip1.mp4"]["status"] == FAILED
    assert "empty mask" in by_input["clip1.mp4"]["error"] and "HarmoVidTestFilter" in by_input["clip1.mp4"]["error"]
    assert by_input["clip1.mp4"]["attempts"] == 1, "an execution error must not be retried"
    assert all(by_input[f"clip{i}.mp4"]["status"] == DONE for i in (0, 2, 3))
    assert not (output / "clip1").exists()


@pytest.mark.parametrize("subfolder, filename", [("", "../escape.mp4"), ("", "..\\escape.mp4"), ("../..", "escape.mp4"),
                                                 ("/tmp", "escape.mp4"), ("", ".."), ("video/../..", "x.mp4")])
def test_output_names_that_could_escape_the_output_folder_are_rejected(servers, tmp_path, subfolder, filename):
    clips = tmp_path / "clips"
    clips.mkdir()
    (clips / "a.mp4").write_bytes(b"a")
    server = servers(output_name=lambda number, prompt: (subfolder, filename))
    output = tmp_path / "deep" / "out"
    summary = run_batch(config_for(clips, [server], output))
    assert summary.failed == 1 and "unsafe" in summary.records[0]["error"], summary.records
    written = [p for p in tmp_path.rglob("*") if p.is_file() and p.suffix == ".mp4" and p.parent != clips]
    assert written == [], f"a hostile name wrote {written}"


def test_safe_relative_path_keeps_plain_names():
    assert safe_relative_path("video", "ComfyUI_00001_.mp4").as_posix() == "video/ComfyUI_00001_.mp4"
    assert safe_relative_path("", "out.png").as_posix() == "out.png"
    with pytest.raises(UnsafeServerData):
        safe_relative_path("", "a/b.mp4")


def test_oversized_output_is_refused_and_nothing_partial_is_left(servers, clips, tmp_path):
    server = servers(output_bytes=lambda data: b"x" * 5000)
    output = tmp_path / "out"
    summary = run_batch(config_for(clips, [server], output, max_output_bytes=1000))
    assert summary.failed == 4 and "limit" in summary.records[0]["error"]
    assert [p for p in output.rglob("*") if p.is_file()] == [output / "manifest.jsonl"]


def test_existing_outputs_are_kept_unless_overwrite(servers, clips, tmp_path):
    server = servers(output_name=lambda number, prompt: ("video", "result.mp4"))
    output = tmp_path / "out"
    existing = output / "clip0" / "video" / "result.mp4"
    existing.parent.mkdir(parents=True)
    existing.write_bytes(b"precious")
    summary = run_batch(config_for(clips, [server], output))
    record = next(r for r in summary.records if Path(r["input"]).name == "clip0.mp4")
    assert record["status"] == FAILED and "--overwrite" in record["error"]
    assert existing.read_bytes() == b"precious", "an existing output was overwritten without --overwrite"

    summary = run_batch(config_for(clips, [server], tmp_path / "out2"))
    assert summary.done == 4
    (tmp_path / "out" / "manifest.jsonl").unlink()
    summary = run_batch(config_for(clips, [server], output, overwrite=True))
    assert summary.done == 4 and existing.read_bytes() == expected_output(clips / "clip0.mp4")


def test_existing_manifest_needs_resume(servers, clips, tmp_path):
    server = servers()
    output = tmp_path / "out"
    run_batch(config_for(clips, [server], output))
    with pytest.raises(HarmoVidError, match="--resume"):
        run_batch(config_for(clips, [server], output))


def test_ui_format_workflow_is_refused_with_how_to_export(tmp_path):
    ui = tmp_path / "ui.json"
    ui.write_text(json.dumps({"last_node_id": 1, "last_link_id": 0, "nodes": [{"id": 1, "type": "LoadVideo"}], "links": [], "version": 0.4}))
    with pytest.raises(HarmoVidError, match=r"UI-format.*Export \(API\)"):
        load_api_workflow(ui)


def test_missing_node_class_is_reported_before_anything_is_queued(servers, clips, tmp_path):
    info = {k: v for k, v in VIDEO_OBJECT_INFO.items() if k != "HarmoVidTestFilter"}
    server = servers(object_info=info)
    with pytest.raises(HarmoVidError, match=r"lacks node\(s\) 2 \(HarmoVidTestFilter\)"):
        run_batch(config_for(clips, [server], tmp_path / "out"))
    assert server.prompts == [] and server.uploads == {}, "nothing may be uploaded or queued"
    assert not (tmp_path / "out").exists(), "a batch that cannot start must not leave an output folder"


def test_unknown_input_name_is_reported(servers, clips, tmp_path):
    server = servers()
    with pytest.raises(HarmoVidError, match="has no input 'strenght'.*strength"):
        run_batch(config_for(clips, [server], tmp_path / "out", overrides=[parse_assignment("2.strenght=1")]))


def test_unreachable_server_is_a_clear_error(clips, tmp_path):
    with pytest.raises(HarmoVidError, match="127.0.0.1:9 is unreachable"):
        config = config_for(clips, [], tmp_path / "out")
        config.servers = ["127.0.0.1:9"]  # the discard port: nothing listens there
        run_batch(config)


def test_cli_runs_a_folder_with_a_fixed_upload_and_reports(servers, clips, workflow_file, tmp_path, capsys):
    server = servers()
    background = tmp_path / "background.mp4"
    background.write_bytes(b"BACKGROUND")
    workflow = dict(SIMPLE_WORKFLOW, **{"4": {"class_type": "LoadVideo", "inputs": {"file": "x.mp4"}}})
    workflow_file.write_text(json.dumps(workflow))
    code = harmovid_main(["batch", str(workflow_file), str(clips), "--server", server.url, "--input-node", "1.file",
                          "--upload", f"4.file={background}", "--output", str(tmp_path / "out"), "--backoff", "0.1"])
    assert code == 0, capsys.readouterr().err
    assert "4 done, 0 failed" in capsys.readouterr().out
    assert "background.mp4" in server.uploads and sum(1 for k in server.uploads if k.startswith("background")) == 1
    assert all(p["4"]["inputs"]["file"] == "background.mp4" for p in server.prompts)


def test_cli_refuses_ui_workflow_with_exit_code_2(tmp_path, clips, capsys):
    ui = tmp_path / "ui.json"
    ui.write_text(json.dumps({"nodes": [], "links": [], "version": 0.4}))
    assert harmovid_main(["batch", str(ui), str(clips), "--input-node", "1.file"]) == 2
    assert "UI-format" in capsys.readouterr().err


def test_interrupt_keeps_manifest_whole_and_removes_partial_downloads(servers, clips, tmp_path):
    server = servers(output_bytes=lambda data: b"x" * (4 << 20), view_delay=0.05)
    output = tmp_path / "out"
    config = config_for(clips, [server], output, per_server=2)

    async def interrupt_during_first_download():
        task = asyncio.create_task(BatchRunner(config).run())
        while not server.view_started.is_set():
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.1)
        task.cancel()  # what Ctrl-C does to asyncio.run's main task
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(interrupt_during_first_download())
    records = manifest_lines(output / "manifest.jsonl")
    assert records and {r["status"] for r in records} == {INTERRUPTED}, records
    assert [p for p in output.rglob("*") if p.is_file()] == [output / "manifest.jsonl"], "partial downloads must be removed"
    assert not [p for p in output.iterdir() if p.name.startswith(".")], "staging folders must be removed"
    queued_but_unfinished = [r["prompt_id"] for r in records if r["prompt_id"] not in server.completed]
    assert set(queued_but_unfinished) <= set(server.deleted), "queued prompts of an interrupted batch should be cancelled"

    summary = run_batch(config_for(clips, [servers()], output, resume=True))
    assert summary.done == 4 and summary.skipped == 0


def test_restarted_server_gets_the_lost_job_again(servers, clips, tmp_path):
    first = servers(step_delay=0.05, die_on_job=2)
    port, restarted = first.port, {}

    def restart_when_dead():
        while first._runner is not None and not first._closed:
            time.sleep(0.02)
        restarted["server"] = servers(port=port)  # same address, empty queue and history, as after a restart

    watcher = threading.Thread(target=restart_when_dead, daemon=True)
    watcher.start()
    summary = run_batch(config_for(clips, [first], tmp_path / "out", server_grace=2.0, server_wait=10, per_server=1))
    watcher.join(5)
    assert (summary.done, summary.failed) == (4, 0), summary.records
    assert len(restarted["server"].completed) == 3, "the restarted server should run the lost job and the rest"


def test_a_manifest_that_cannot_be_written_stops_the_batch_instead_of_hanging(servers, clips, tmp_path, monkeypatch):
    server = servers()
    original, calls = Manifest.append, []

    def append_then_fail(self, record):
        calls.append(record)
        if len(calls) > 1:
            raise OSError(28, "No space left on device")
        original(self, record)

    monkeypatch.setattr(Manifest, "append", append_then_fail)
    with pytest.raises(OSError, match="No space left"):
        asyncio.run(asyncio.wait_for(BatchRunner(config_for(clips, [server], tmp_path / "out")).run(), 30))
    assert len(manifest_lines(tmp_path / "out" / "manifest.jsonl")) == 1


def test_a_model_or_file_the_server_lacks_is_reported_before_anything_is_queued(servers, clips, tmp_path):
    server = servers()
    with pytest.raises(HarmoVidError, match=r"3.codec = 'prores'.*offers: 'auto', 'h264'"):
        run_batch(config_for(clips, [server], tmp_path / "out", overrides=[parse_assignment("3.codec=prores")]))
    assert server.prompts == [] and server.uploads == {}, "nothing may be uploaded or queued"


def test_match_uploads_each_inputs_partner_file(servers, clips, tmp_path):
    originals = tmp_path / "originals"
    originals.mkdir()
    for clip in clips.glob("*.mp4"):
        (originals / f"{clip.stem}.mov").write_bytes(b"original of " + clip.read_bytes())
    workflow = dict(SIMPLE_WORKFLOW, **{"4": {"class_type": "LoadVideo", "inputs": {"file": "original.mp4"}}})
    server = servers()
    summary = run_batch(config_for(clips, [server], tmp_path / "out", workflow=workflow,
                                   matched=[(parse_target("4.file"), originals)]))
    assert summary.done == 4, summary.records
    for prompt in server.prompts:
        clip, partner = prompt["1"]["inputs"]["file"], prompt["4"]["inputs"]["file"]
        assert server.uploads[partner] == b"original of " + server.uploads[clip], f"{partner} is not the partner of {clip}"
    assert all(r["matched"]["4.file"].endswith(".mov") for r in summary.records)


def test_an_input_without_its_partner_file_is_an_error_before_anything_is_queued(servers, clips, tmp_path):
    originals = tmp_path / "originals"
    originals.mkdir()
    (originals / "clip0.mp4").write_bytes(b"only one")
    workflow = dict(SIMPLE_WORKFLOW, **{"4": {"class_type": "LoadVideo", "inputs": {"file": "original.mp4"}}})
    server = servers()
    with pytest.raises(HarmoVidError, match=r"no partner file: clip1.mp4"):
        run_batch(config_for(clips, [server], tmp_path / "out", workflow=workflow, matched=[(parse_target("4.file"), originals)]))
    assert server.prompts == []


def test_large_replies_are_read_whole_and_oversized_ones_refused(servers, clips, tmp_path, monkeypatch):
    info = dict(VIDEO_OBJECT_INFO, **{f"Other{i}": {"input": {"required": {}}, "output": [], "description": "x" * 500}
                                      for i in range(2000)})  # about 1 MB, many network chunks
    server = servers(object_info=info)
    assert run_batch(config_for(clips, [server], tmp_path / "out")).done == 4
    monkeypatch.setattr("comfy_harmovid.batch.client.MAX_REPLY_BYTES", 100_000)
    with pytest.raises(HarmoVidError, match="over 100000 bytes"):
        run_batch(config_for(clips, [server], tmp_path / "out2"))


def test_previews_in_a_history_entry_are_not_downloaded():
    from comfy_harmovid.batch.client import output_items

    entry = {"outputs": {
        "5": {"harmovid_preview": [{"filename": "mask_1_000.jpg", "subfolder": "harmovid", "type": "temp"}],
              "harmovid_preview_index": [0]},
        "11": {"images": [{"filename": "out_00001_.mp4", "subfolder": "harmovid", "type": "output"}], "animated": [True]},
    }}
    assert [(node, item["filename"]) for node, item in output_items(entry)] == [("11", "out_00001_.mp4")]
