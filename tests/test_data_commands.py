"""`tdro-suite data validate|stats` through the Typer app, on small files and on the bundled mixture."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from tdro_suite.common.errors import DataError
from tdro_suite.data import commands


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    root = typer.Typer()

    @root.callback()
    def _root() -> None:
        """Stand-in for the tdro-suite root app."""

    commands.register(root)
    return root


def _line(i: int, positives: int = 1) -> str:
    return json.dumps(
        {
            "query_id": str(i),
            "query": f"query {i}",
            "positive_passages": [{"docid": f"p{i}-{k}", "text": "yes"} for k in range(positives)],
            "negative_passages": [{"docid": f"n{i}", "text": "no"}] * 2,
        }
    )


def test_validate_fails_with_location(app: typer.Typer, tmp_path: Path) -> None:
    bad = tmp_path / "t.jsonl"
    bad.write_text(_line(0) + "\n" + _line(1, positives=0) + "\n")
    result = CliRunner().invoke(app, ["data", "validate", str(bad)])
    assert isinstance(result.exception, DataError)
    assert f"{bad}:2: field 'positive_passages'" in str(result.exception)


def test_validate_skip_invalid_reports_counts(app: typer.Typer, tmp_path: Path) -> None:
    bad = tmp_path / "t.jsonl"
    bad.write_text("\n".join([_line(0), "{x", _line(1, positives=0), _line(2)]) + "\n")
    result = CliRunner().invoke(app, ["data", "validate", str(bad), "--skip-invalid", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    task = report["per_task"][0]
    assert task["examples"] == 2
    assert task["invalid"]["skipped_by_reason"] == {"empty_positives": 1, "malformed_json": 1}
    assert report["skipped"] == 2
    text = CliRunner().invoke(app, ["data", "validate", str(bad), "--skip-invalid"])
    assert "2 invalid lines skipped" in text.output and "malformed_json: 1" in text.output


def test_stats_json(app: typer.Typer, tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text(_line(0) + "\n" + _line(1, positives=2) + "\n")
    result = CliRunner().invoke(app, ["data", "stats", str(path), "--json"])
    assert result.exit_code == 0, result.output
    task = json.loads(result.output)["per_task"][0]
    assert task["examples"] == 2 and task["negatives_per_query"] == 2.0
    assert task["positives_per_query"] == 1.5 and task["mean_query_chars"] == 7.0


def test_size_mismatch_is_a_problem(app: typer.Typer, tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_text(_line(0) + "\n")
    (tmp_path / "tasks.json").write_text(json.dumps([{"name": "a", "path": "a.jsonl", "size": 5}]))
    result = CliRunner().invoke(app, ["data", "validate", str(tmp_path)])
    assert isinstance(result.exception, DataError)
    assert "the manifest says size 5, the file holds 1" in str(result.exception)


def test_bundled_mixture_acceptance(app: typer.Typer) -> None:
    """The issue's acceptance: stats on the bundle shows >= 10 tasks and >= 4 languages; validate passes."""
    result = CliRunner().invoke(app, ["data", "stats", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["tasks"] >= 10 and len(report["languages"]) >= 4
    assert report["ok"] and report["skipped"] == 0
    assert any(t["symmetric"] for t in report["per_task"]) and not all(t["symmetric"] for t in report["per_task"])
    for task in report["per_task"]:
        assert 200 <= task["examples"] <= 1500, task["name"]
        assert task["min_negatives"] >= 7, task["name"]
    validate = CliRunner().invoke(app, ["data", "validate"])
    assert validate.exit_code == 0 and "OK: " in validate.output
    table = CliRunner().invoke(app, ["data", "stats"])
    assert "code_python_stdlib" in table.output and "languages" in table.output
