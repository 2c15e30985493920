"""Architecture search (TinyNAS): a MobileNetV2-style space, stage-1 space optimisation, a
once-for-all supernet, evolutionary search under mcunet's own memory plan, and int8 export.
See docs/search.md. Modules import TensorFlow only inside the functions that need it."""
