"""LLM agents on pydantic-ai (docs/reference.md, "LLM agents"); needs the `llm` extra."""
