"""LLM backends behind one ChatModel interface (in-process transformers or any OpenAI-compatible endpoint), and the embedded model."""
