//! prism-resize: the image engine (a pure library) and the resize worker.
