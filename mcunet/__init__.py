"""mcunet: int8 TensorFlow Lite models to bit-exact, malloc-free C for microcontrollers.

    import mcunet
    m = mcunet.compile("model.tflite", board="mps2-an386")
    m.write("lib/")
    outputs = mcunet.simulate(m, inputs)

See docs/python-api.md.
"""

__version__ = "0.1.0"
__all__ = ["compile", "simulate", "CompiledModel", "McunetError", "__version__"]


def __getattr__(name: str):
    # The API is loaded on first use, so that `import mcunet.graph` (and every module's
    # `from mcunet import __version__`) stays light and free of import cycles.
    if name in ("compile", "simulate"):
        from . import api
        return getattr(api, name)
    if name == "CompiledModel":
        from .compiler import CompiledModel
        return CompiledModel
    if name == "McunetError":
        from .errors import McunetError
        return McunetError
    raise AttributeError(f"module 'mcunet' has no attribute {name!r}")
