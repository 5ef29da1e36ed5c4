#!/usr/bin/env bash
# Set up (idempotent) and run the main job on built-in defaults. Extra arguments go to `poet profiles`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/poet profiles "$@"
