"""Headless batches: send an API-format workflow to ComfyUI servers for many input files.

    from comfy_harmovid.batch import BatchConfig, load_api_workflow, parse_target, run_batch
    config = BatchConfig(workflow=load_api_workflow("workflows/api/harmonize_builtin.json"),
                         inputs=collect_inputs(["clips/"]), servers=["127.0.0.1:8188"],
                         output_dir=Path("out"), input_target=parse_target("1.file"))
    summary = run_batch(config)          # outputs in out/<clip>/, records in out/manifest.jsonl
"""

from .client import ComfyClient, JobFailed, ServerUnavailable
from .manifest import DONE, FAILED, INTERRUPTED, Manifest
from .outputs import JobOutputs, UnsafeServerData, safe_relative_path
from .runner import BatchConfig, BatchEvent, BatchRunner, BatchSummary, collect_inputs, run_batch
from .workflow import (
    Assignment, apply_assignments, check_api_workflow, is_ui_format, load_api_workflow, parse_assignment, parse_target,
)

__all__ = [
    "Assignment", "BatchConfig", "BatchEvent", "BatchRunner", "BatchSummary", "ComfyClient", "DONE", "FAILED",
    "INTERRUPTED", "JobFailed", "JobOutputs", "Manifest", "ServerUnavailable", "UnsafeServerData",
    "apply_assignments", "check_api_workflow", "collect_inputs", "is_ui_format", "load_api_workflow",
    "parse_assignment", "parse_target", "run_batch", "safe_relative_path",
]
