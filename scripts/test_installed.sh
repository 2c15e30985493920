#!/usr/bin/env bash
# Run the whole test suite against a plain (non-editable) install of mcunet in a fresh venv:
# a wheel built from this tree, installed with its test, TensorFlow and Ray extras, and the tests
# run from outside the tree so that nothing imports the checkout. Takes a few minutes.
#     bash scripts/test_installed.sh [pytest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 -m venv "$work/venv"
# Build from a copy, so setuptools' build/ folder never lands in the work tree.
mkdir "$work/src"
git ls-files -z | xargs -0 cp --parents -t "$work/src"
(cd "$work/src" && "$work/venv/bin/pip" wheel -q --no-deps -w "$work/wheels" .)
wheel=$(ls "$work"/wheels/mcunet-*.whl)
"$work/venv/bin/pip" install -q --disable-pip-version-check "$wheel[test,tf,ray]"
cd "$work"
MCUNET_MODELS="${MCUNET_MODELS:-$root/../shared/models/mlperf-tiny}" \
    "$work/venv/bin/python" -P -m pytest -q --import-mode=importlib -p no:cacheprovider \
    --rootdir "$work/src" -c "$work/src/setup.cfg" "$work/src/tests" "$@"
