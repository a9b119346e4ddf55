"""Read texts for `tdro-suite encode` and write their vectors and ids atomically."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from tdro_suite.common.errors import DataError
from tdro_suite.common.io import atomic_path, atomic_write_text
from tdro_suite.common.jsonl import numbered_lines, parse_json_line
from tdro_suite.modeling.config import EncodeConfig


def read_texts(
    lines: Iterable[str], source: str, input_format: str, text_field: str, id_field: str
) -> tuple[list[str], list[str]]:
    """Parse plain lines (id = line number) or JSON lines (`text_field`, optional `id_field`)."""
    ids: list[str] = []
    texts: list[str] = []
    fmt = input_format
    for lineno, raw in enumerate(lines, start=1):
        line = raw.rstrip("\n")
        if fmt == "auto":
            fmt = "jsonl" if line.lstrip().startswith("{") else "lines"
        if fmt == "lines":
            if line.strip():
                ids.append(str(lineno))
                texts.append(line)
            continue
        if not line.strip():
            continue
        record = parse_json_line(line, f"{source}:{lineno}")
        if not isinstance(record, dict) or not isinstance(record.get(text_field), str):
            raise DataError(f"{source}:{lineno}: field '{text_field}' is missing or not a string.")
        ids.append(str(record.get(id_field, lineno)))
        texts.append(record[text_field])
    return ids, texts


def read_input(source: str, input_format: str, text_field: str, id_field: str) -> tuple[list[str], list[str]]:
    """(ids, texts) from standard input ("-") or a file (.gz too; a line that is not UTF-8 names file:line)."""
    if source == "-":
        ids, texts = read_texts(sys.stdin, "<stdin>", input_format, text_field, id_field)
    else:
        path = Path(source)
        if not path.is_file():
            raise DataError(f"Input file not found: {path}")
        lines = (line for _, line in numbered_lines(path))
        ids, texts = read_texts(lines, str(path), input_format, text_field, id_field)
    if not texts:
        raise DataError(f"No texts to encode in {source if source != '-' else 'standard input'}.")
    return ids, texts


def run_encode(cfg: EncodeConfig) -> tuple[Path, Path, int]:
    """Encode the configured input; returns (vectors path, ids path, count)."""
    from tdro_suite.modeling.encoder import Encoder

    ids, texts = read_input(cfg.input, cfg.input_format, cfg.text_field, cfg.id_field)
    encoder = Encoder.from_pretrained(
        cfg.model, max_length=cfg.max_length, device=cfg.device, dtype=cfg.dtype,
        attn_implementation=cfg.attn_implementation,
    )
    vectors = encoder.encode(
        texts, batch_size=cfg.batch_size, prompt=cfg.prompt, prompt_name=cfg.prompt_name, show_progress=None
    )
    out = Path(cfg.output)
    if out.suffix != ".npy":
        out = out.with_name(out.name + ".npy")
    ids_out = Path(cfg.ids_output) if cfg.ids_output else out.with_suffix(".ids.txt")
    with atomic_path(out) as tmp, open(tmp, "wb") as fh:
        np.save(fh, vectors)
    atomic_write_text(ids_out, "".join(f"{i}\n" for i in ids))
    return out, ids_out, len(texts)
