"""Serve settings: defaults < YAML < TDRO_* environment < CLI options, with errors that name the key."""

from __future__ import annotations

import json

import pytest

from tdro_suite.common.errors import ConfigError
from tdro_suite.serve.settings import SETTINGS_ENV_VAR, ServeSettings, load_serve_settings, settings_from_environment


def test_precedence_file_env_cli(tmp_path, monkeypatch) -> None:
    config = tmp_path / "serve.yaml"
    config.write_text("port: 7000\nmax_batch_size: 8\nworkers: 3\ncors_origins: [https://a.example]\n")
    monkeypatch.setenv("TDRO_PORT", "7100")
    monkeypatch.setenv("TDRO_MAX_BATCH_SIZE", "16")
    settings = load_serve_settings(config, {"max_batch_size": 32, "host": None})
    assert settings.port == 7100  # env beats the file
    assert settings.max_batch_size == 32  # the command line beats env
    assert settings.workers == 3 and settings.cors_origins == ["https://a.example"]  # the file beats defaults
    assert settings.host == "127.0.0.1"  # None means "not given": the default stays


def test_errors_name_the_key_and_source(tmp_path, monkeypatch) -> None:
    config = tmp_path / "serve.yaml"
    config.write_text("max_batch_sise: 8\n")
    with pytest.raises(ConfigError, match=r"unknown key 'max_batch_sise'.*serve.yaml|serve.yaml.*unknown key"):
        load_serve_settings(config)
    with pytest.raises(ConfigError, match="max_queue_inputs"):
        load_serve_settings(None, {"max_inputs_per_request": 10, "max_queue_inputs": 5})
    monkeypatch.setenv("TDRO_PORT", "not-a-port")
    with pytest.raises(ConfigError, match="port"):
        load_serve_settings(None)


def test_api_key_from_named_variable_travels_to_workers(monkeypatch) -> None:
    monkeypatch.setenv("SERVE_KEY_FOR_TEST", "abc")
    settings = load_serve_settings(None, {"api_key_env": "SERVE_KEY_FOR_TEST", "workers": 2})
    assert settings.api_key is not None and settings.api_key.get_secret_value() == "abc"
    assert "abc" not in repr(settings)  # a SecretStr never prints
    monkeypatch.setenv(SETTINGS_ENV_VAR, settings.to_env_json())
    monkeypatch.delenv("SERVE_KEY_FOR_TEST")
    worker = settings_from_environment()
    assert worker.api_key.get_secret_value() == "abc" and worker.workers == 2
    assert "api_key_env" not in json.loads(settings.to_env_json())  # the key itself travels, not its name


def test_empty_api_key_means_no_auth() -> None:
    assert ServeSettings(api_key="").api_key is None


def test_model_threads_share_the_usable_cores_among_workers(monkeypatch) -> None:
    import os

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    assert ServeSettings().model_threads() == 8  # one worker: every core (not cores - 1)
    assert ServeSettings(workers=3).model_threads() == 2
    assert ServeSettings(workers=16).model_threads() == 1
    assert ServeSettings(workers=3, torch_threads=5).model_threads() == 5


def test_model_streams_default_to_two_on_a_cpu_with_two_threads_and_one_on_a_gpu() -> None:
    assert ServeSettings(torch_threads=2).streams("cpu") == 2
    assert ServeSettings(torch_threads=8).streams("cpu") == 2
    assert ServeSettings(torch_threads=1).streams("cpu") == 1  # never more streams than threads
    assert ServeSettings(torch_threads=2, model_streams=4).streams("cpu") == 2
    assert ServeSettings(torch_threads=8).streams("cuda") == 1
    assert ServeSettings(torch_threads=8, model_streams=2).streams("cuda") == 2
