"""mcunet: int8 TensorFlow Lite models to bit-exact, malloc-free C for microcontrollers."""

__version__ = "0.1.0"
