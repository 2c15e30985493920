"""Compile a model (bytes or path), run the generated C on the host and demand bit-exactness
with TFLite's reference kernels (with arithmetic="tflm": with TF Lite Micro's). Shared by the
operator and model tests."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from mcunet.codegen.library import LibraryOptions
from mcunet.compiler import compile_graph
from mcunet.frontend import parse_tflite
from mcunet.memory import verify
from mcunet.passes import run_passes
from mcunet.reference import expected_outputs
from mcunet.host import build_host, random_inputs  # noqa: F401 (tests import it from here)

FAST = ["-O1"]  # small generated models build faster; -O2 is the default everywhere else


def assert_bit_exact(model: bytes | str | Path, inputs: list[np.ndarray] | None = None,
                     rows: int = 3, seed: int = 0, sanitize: bool = False,
                     flags: list[str] | None = FAST, patch: str = "auto",
                     arithmetic: str = "reference", target: str | None = None):
    """Returns (compiled model, our outputs) after checking every output byte against TFLite's
    reference kernels, or with arithmetic "tflm" against TF Lite Micro's interpreter. target:
    the core whose kernels to build on the host (cortex-m4: the DSP ones)."""
    data = Path(model).read_bytes() if isinstance(model, (str, Path)) else model
    compiled = compile_graph(run_passes(parse_tflite(data)), patch=patch, target=target,
                             options=LibraryOptions(arithmetic=arithmetic))
    verify(compiled.plan)
    if inputs is None:
        inputs = random_inputs(compiled.graph, rows, seed)
    ours, _ = build_host(compiled, sanitize=sanitize, extra_flags=flags).run(inputs)
    expected = expected_outputs(data, inputs, arithmetic)
    against = "TF Lite Micro" if arithmetic == "tflm" else "TFLite's reference"
    assert len(ours) == len(expected)
    for k, (mine, ref) in enumerate(zip(ours, expected)):
        assert mine.dtype == ref.dtype and mine.shape == ref.shape, (k, mine.shape, ref.shape)
        if not np.array_equal(mine.view(np.uint8), ref.view(np.uint8)):
            bad = np.flatnonzero(mine.reshape(-1) != ref.reshape(-1))
            raise AssertionError(
                f"output {k}: {bad.size} of {mine.size} values differ from {against} "
                f"(first at flat index {bad[0]}: ours {mine.reshape(-1)[bad[0]]}, "
                f"expected {ref.reshape(-1)[bad[0]]})")
    return compiled, ours
