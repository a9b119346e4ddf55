"""Small synthetic training tasks (Tevatron jsonl + tasks.json) for the trainer tests and torchrun scripts."""

from __future__ import annotations

import json
from pathlib import Path

WORDS = ["apple", "river", "engine", "violin", "desert", "planet", "garden", "coffee", "winter", "pencil",
         "castle", "mirror", "forest", "rocket", "harbor", "candle"]


def write_tasks(folder: Path, n_tasks: int = 3, per_task: int = 12, negatives: int = 2) -> Path:
    """`folder/tasks.json` + one jsonl per task; a query shares a word with its positive only."""
    folder.mkdir(parents=True, exist_ok=True)
    manifest = []
    for t in range(n_tasks):
        name = f"task{t}"
        lines = []
        for i in range(per_task):
            word = WORDS[(i + t) % len(WORDS)]
            negs = [WORDS[(i + t + 3 + k) % len(WORDS)] for k in range(negatives)]
            lines.append(json.dumps({
                "query_id": f"{name}-{i}",
                "query": f"which {word} {i}",
                "positive_passages": [{"docid": f"{name}-p{i}", "title": "", "text": f"the {word} number {i}"}],
                "negative_passages": [
                    {"docid": f"{name}-n{i}-{k}", "title": "", "text": f"the {w} number {i}"}
                    for k, w in enumerate(negs)
                ],
            }))
        (folder / f"{name}.jsonl").write_text("\n".join(lines) + "\n")
        manifest.append({"name": name, "path": f"{name}.jsonl", "instruction": f"Find passages for {name}",
                         "symmetric": t == 2})
    (folder / "tasks.json").write_text(json.dumps(manifest))
    return folder / "tasks.json"
