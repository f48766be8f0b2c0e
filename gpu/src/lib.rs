//! gemma-gpu
