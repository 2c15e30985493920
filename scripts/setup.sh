#!/usr/bin/env bash
# Set up mcunet on a fresh Debian machine: system packages, then a virtual environment in
# .venv with mcunet (editable) and what the tests need. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

# gcc for host simulation; the Arm toolchain and QEMU for firmware on emulated Cortex-M
# boards; Fashion-MNIST for the default search; CMake and a C++ compiler for the tests of
# the library's CMake and Arduino recipes (docs/firmware.md).
need_apt=()
command -v cc >/dev/null 2>&1 || need_apt+=(gcc libc6-dev)
command -v c++ >/dev/null 2>&1 || need_apt+=(g++)
for pkg in gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm dataset-fashion-mnist cmake; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
done
if [ ${#need_apt[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq && apt-get install -y -qq "${need_apt[@]}"
    else
        echo "setup: please install ${need_apt[*]} (apt-get install ${need_apt[*]})" >&2
        exit 1
    fi
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
# The TensorFlow extra is for tests that build models with TF's converter (and for search);
# compile, plan and simulate never import it. The Ray extra is for `mcunet search --ray` and
# its test (a local two-node cluster); the search without --ray never imports it.
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[test,tf,ray]"
echo "setup: ready (.venv/bin/mcunet)"
