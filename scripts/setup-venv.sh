#!/usr/bin/env bash
# Creates the project's virtual environment from scratch: torch (CPU build) first, so nothing pulls
# a CUDA build; then the package with its extras; then the packages that must skip their own pins.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${HARMOVID_VENV:-.venv}"
python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet torch==2.13.0
"$venv/bin/python" -m pip install --quiet -e ".[test]"
"$venv/bin/python" install.py
"$venv/bin/python" -c "import torch, diffusers, av, cv2, mediapipe, sam2; print('environment ready: torch', torch.__version__)"
touch "$venv/.harmovid-ready"
