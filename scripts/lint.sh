#!/usr/bin/env bash
# `make lint` (and the first step of `make test`): style, types, and the architecture.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy --no-error-summary  # [tool.mypy] in pyproject.toml: bot and commands
.venv/bin/lint-imports --no-cache >/dev/null || .venv/bin/lint-imports --no-cache  # contracts
