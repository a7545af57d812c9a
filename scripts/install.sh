#!/usr/bin/env bash
# Install botkit into a virtual environment (default .venv), the right torch first.
#
#   scripts/install.sh [EXTRAS]      e.g. scripts/install.sh dev  or  scripts/install.sh server,openai
#
# torch: on a machine without an NVIDIA GPU we install the CPU build (a plain
# `pip install torch` on Linux pulls a multi-GB CUDA build). Override with
#   BOTKIT_TORCH="torch==X.Y.Z"         the requirement to install
#   BOTKIT_TORCH_INDEX_URL=URL|none     an extra index for it (default on CPU-only Linux:
#                                       PyTorch's CPU wheel index; "none" to skip)
#   BOTKIT_VENV=DIR                     where the environment lives (default .venv)
set -euo pipefail
cd "$(dirname "$0")/.."

extras="${1:-}"
venv="${BOTKIT_VENV:-.venv}"
python="${PYTHON:-python3}"
torch_req="${BOTKIT_TORCH:-torch==2.13.0}"

if [ ! -x "$venv/bin/python" ]; then
  echo "botkit: creating virtual environment $venv"
  "$python" -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip --disable-pip-version-check)
"${pip[@]}" install -q --upgrade pip >/dev/null

if ! "$venv/bin/python" -c "import torch" >/dev/null 2>&1; then
  index_args=()
  index="${BOTKIT_TORCH_INDEX_URL:-}"
  if [ -z "$index" ] && ! command -v nvidia-smi >/dev/null 2>&1 && [ "$(uname -s)" = "Linux" ]; then
    index="https://download.pytorch.org/whl/cpu"
  fi
  if [ -n "$index" ] && [ "$index" != "none" ]; then
    # Only use the index when it answers: an unreachable one costs pip minutes of retries.
    if "$venv/bin/python" -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=5)" "$index" \
        >/dev/null 2>&1; then
      index_args=(--extra-index-url "$index")
    else
      echo "botkit: $index is not reachable; installing $torch_req from the configured indexes"
      index=""
    fi
  fi
  echo "botkit: installing $torch_req ${index:+(extra index: $index)}"
  "${pip[@]}" install -q "${index_args[@]}" "$torch_req"
fi

target="."
[ -n "$extras" ] && target=".[$extras]"
echo "botkit: installing botkit $target"
"${pip[@]}" install -q -e "$target"
