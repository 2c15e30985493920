"""Code generation: lowered, planned graphs to C by rendering templates/."""
