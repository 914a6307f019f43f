"""LLM agents on pydantic-ai (docs/llm.md); needs the `llm` extra."""
