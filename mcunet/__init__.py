"""mcunet: int8 TensorFlow Lite models to bit-exact, malloc-free C for microcontrollers.

    import mcunet
    m = mcunet.compile("model.tflite", board="mps2-an386")
    m.write("lib/")
    outputs = mcunet.simulate(m, inputs)

See docs/python-api.md.
"""

import os as _os

__version__ = "0.1.0"

# Installed, the subpackages codegen, templates, search and boards live inside this folder
# (setup.cfg's package_dir maps them in). In a source checkout they sit beside it: when
# Python imports mcunet straight from a checkout (`python -m mcunet` in the repository), let
# `mcunet.codegen` and the others resolve to those folders.
_checkout = _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__)))
if _os.path.isfile(_os.path.join(_checkout, "setup.cfg")) and \
        _os.path.isfile(_os.path.join(_checkout, "codegen", "__init__.py")):
    __path__.append(_checkout)  # noqa: F821 (a package's __path__)
__all__ = ["compile", "simulate", "tune_kernels", "CompiledModel", "McunetError", "__version__"]


def __getattr__(name: str):
    # The API is loaded on first use, so that `import mcunet.graph` (and every module's
    # `from mcunet import __version__`) stays light and free of import cycles.
    if name in ("compile", "simulate", "tune_kernels"):
        from . import api
        return getattr(api, name)
    if name == "CompiledModel":
        from .compiler import CompiledModel
        return CompiledModel
    if name == "McunetError":
        from .errors import McunetError
        return McunetError
    raise AttributeError(f"module 'mcunet' has no attribute {name!r}")
