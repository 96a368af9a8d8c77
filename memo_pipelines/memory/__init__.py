"""The memory model: LoRA training on reflections, mergekit merges, and the prompt format shared with inference."""
