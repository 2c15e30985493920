"""Code generation: lowered, planned graphs to C by rendering mcunet.templates.

Importing the package registers every operator's lowering (codegen/ops)."""
from . import ops  # noqa: F401
