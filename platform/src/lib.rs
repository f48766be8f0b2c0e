//! gemma-platform: the std layer.
