#!/usr/bin/env bash
# Set up (idempotent) and run the main job on built-in defaults. Extra arguments go to `poet demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/poet demo "$@"
