"""Planted synthetic tasks for tDRO tests: two learnable tasks, one pure-noise task, one trivial task.

Every text is a few whole-word tokens of the BERT vocabulary (MiniLM's tokenizer, which the tiny
test encoder uses), so a 2-layer encoder with hidden size 32 learns the learnable tasks in seconds.

- `map-a`, `map-b`: query "w" → positive "f(w)" for a fixed random pairing f (different word sets);
  the hard negatives are other words' partners. Learnable, but a random encoder is at chance.
- `noisy`: the positive of each line is drawn at random ("positives shuffled"), and each of its 6
  queries occurs 40 times with positives spread over all 24 target words: nothing can be learned;
  proxy and reference stay near chance, log(1 + negatives).
- `easy`: the positive is the query text itself: trivially easy for any encoder.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

WORDS_PER_TASK = 24
EXAMPLES_PER_TASK = 96
NEGATIVES = 7
NOISY_EXAMPLES = 240


def vocabulary(tokenizer_dir: Path, count: int, seed: int = 0) -> list[str]:
    """Distinct lowercase whole-word tokens (4–9 letters) from the tokenizer's vocabulary."""
    from transformers import AutoTokenizer

    vocab = AutoTokenizer.from_pretrained(tokenizer_dir).get_vocab()
    words = sorted(w for w in vocab if w.isascii() and w.isalpha() and w.islower() and 4 <= len(w) <= 9)
    rng = random.Random(seed)
    return rng.sample(words, count)


def _line(qid: str, query: str, positive: str, negatives: list[str]) -> dict:
    return {
        "query_id": qid,
        "query": query,
        "positive_passages": [{"docid": positive, "title": "", "text": positive}],
        "negative_passages": [{"docid": n, "title": "", "text": n} for n in negatives],
    }


def build_planted_tasks(folder: Path, tokenizer_dir: Path, seed: int = 0) -> Path:
    """Write the four tasks as .jsonl files plus tasks.json; return the manifest path."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    words = vocabulary(tokenizer_dir, 8 * WORDS_PER_TASK, seed)
    chunks = [words[i * WORDS_PER_TASK : (i + 1) * WORDS_PER_TASK] for i in range(8)]
    tasks: dict[str, list[dict]] = {}
    for name, (sources, targets) in {"map-a": (chunks[0], chunks[1]), "map-b": (chunks[2], chunks[3])}.items():
        lines = []
        for i in range(EXAMPLES_PER_TASK):
            j = i % WORDS_PER_TASK
            others = rng.sample([t for k, t in enumerate(targets) if k != j], NEGATIVES)
            lines.append(_line(f"{name}-{i}", sources[j], targets[j], others))
        tasks[name] = lines
    # 6 queries × 40 lines each, positives drawn afresh from 24 words: no query prefers any word.
    noisy_q, noisy_p = chunks[4][:6], chunks[5]
    tasks["noisy"] = []
    for i in range(NOISY_EXAMPLES):
        drawn = rng.sample(noisy_p, NEGATIVES + 1)
        tasks["noisy"].append(_line(f"noisy-{i}", noisy_q[i % len(noisy_q)], drawn[0], drawn[1:]))
    easy_words = chunks[6] + chunks[7]
    tasks["easy"] = []
    for i in range(EXAMPLES_PER_TASK):
        a, b, *rest = rng.sample(easy_words, 2 + 2 * NEGATIVES)
        text = f"{a} {b}"
        negatives = [f"{rest[2 * n]} {rest[2 * n + 1]}" for n in range(NEGATIVES)]
        tasks["easy"].append(_line(f"easy-{i}", text, text, negatives))
    manifest = []
    for name, lines in tasks.items():
        path = folder / f"{name}.jsonl"
        path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
        manifest.append({"name": name, "path": path.name, "size": len(lines)})
    (folder / "tasks.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return folder / "tasks.json"


def without_dropout(model_dir: Path, folder: Path) -> Path:
    """A copy of a model folder with dropout switched off, so runs that split a batch differently
    (gradient accumulation, several processes) see the same forward and can be compared exactly."""
    import shutil

    shutil.copytree(model_dir, folder, dirs_exist_ok=True)
    config_path = folder / "config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    for key in ("hidden_dropout_prob", "attention_probs_dropout_prob", "attention_dropout", "dropout"):
        if key in config:
            config[key] = 0.0
    config_path.write_text(json.dumps(config, indent=2), encoding="utf-8")
    return folder


def write_stage_configs(
    root: Path, model_dir: Path, *, train_steps: int, optimize_steps: int, **finetune_extra: object
) -> tuple[Path, Path]:
    """The planted tasks plus tiny optimize (with its reference) and finetune YAMLs for end-to-end tests.

    The reference and the fine-tune run `train_steps`, tDRO `optimize_steps`; `finetune_extra` adds
    fine-tuning keys. Returns (optimize.yaml, finetune.yaml).
    """
    import yaml

    data = build_planted_tasks(root / "data", model_dir)
    common = {"hard_negatives": 3, "temperature": 0.05, "query_max_length": 16, "passage_max_length": 16}
    reference = root / "reference.yaml"
    reference.write_text(yaml.safe_dump({**common, "per_device_batch_size": 8, "learning_rate": 5e-3,
                                         "max_steps": train_steps, "progress": False}))
    optimize = root / "optimize.yaml"
    optimize.write_text(yaml.safe_dump({
        **common, "data": [str(data)], "model": str(model_dir), "train_reference": True,
        "reference_config": str(reference), "use_instructions": False, "max_steps": optimize_steps,
        "global_batch_size": 8,
        "step_size": 0.5, "learning_rate": 1e-3,
    }))
    finetune = root / "finetune.yaml"
    finetune.write_text(yaml.safe_dump({
        **common, "data": [str(data)], "model": str(model_dir), "use_instructions": False,
        "per_device_batch_size": 8, "max_steps": train_steps, "learning_rate": 1e-3, "progress": False,
        **finetune_extra,
    }))
    return optimize, finetune
