#!/usr/bin/env bash
# Layering rules (docs/extending.md); see scripts/check_layers.py.
exec /usr/bin/python3 "$(dirname "$0")/check_layers.py" "$(dirname "$0")/.."
