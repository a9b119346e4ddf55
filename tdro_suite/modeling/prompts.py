"""Instruction prompts (the E5-Mistral / RepLLaMA style the paper uses).

A query becomes "Instruct: {task}\nQuery: {query}"; passages get no prompt. Symmetric tasks
(paraphrase, parallel text) put the instruction on both sides so both are embedded alike.
"""

from __future__ import annotations


def query_prompt(instruction: str | None) -> str:
    """The prefix placed before a query; empty when there is no instruction."""
    return f"Instruct: {instruction}\nQuery: " if instruction else ""


def passage_prompt(instruction: str | None, symmetric: bool) -> str:
    """Passages get the query prompt only for symmetric tasks."""
    return query_prompt(instruction) if symmetric else ""
