"""Rendering the engine's instructions as TwiML, with every URL built from the public base URL."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import quote, urlencode

from twilio.twiml.voice_response import Gather as TwimlGather
from twilio.twiml.voice_response import VoiceResponse

from telephony import engine
from telephony.flow import Rescue

SAY_LANGUAGES = {"th": "th-TH", "en": "en-US"}
IVR_PATH = "/twilio/ivr"
RECORDING_STATUS_PATH = "/twilio/recording-status"
RESCUE_RECORDING_PATH = "/twilio/rescue-recording"
AUDIO_PATH = "/twilio/audio/"
# Every state a recording can end in reaches us; absent means the caller said nothing.
RECORDING_EVENTS = "completed absent"


@dataclass(frozen=True)
class Voices:
    public_base_url: str
    voice_th: str
    voice_en: str

    def url(self, path: str, **query: str | int) -> str:
        return self.public_base_url + path + ("?" + urlencode(query) if query else "")


def render(instructions: Sequence[engine.Instruction], seq: int, voices: Voices) -> str:
    """TwiML for one step; `seq` goes into every action URL so a retried request can be recognised."""
    response = VoiceResponse()
    for item in instructions:
        if isinstance(item, engine.Say | engine.Play):
            _speak(response, item, voices)
        elif isinstance(item, engine.Gather):
            _gather(response, item, seq, voices)
        elif isinstance(item, engine.Record):
            response.record(
                action=voices.url(IVR_PATH, seq=seq, ev="record"),
                method="POST",
                max_length=item.max_length,
                finish_on_key=item.finish_on_key,
                timeout=item.timeout,
                play_beep=True,
                trim="trim-silence",
                recording_status_callback=voices.url(RECORDING_STATUS_PATH),
                recording_status_callback_method="POST",
                recording_status_callback_event=RECORDING_EVENTS,
            )
        elif isinstance(item, engine.Dial):
            dial = response.dial(
                action=voices.url(IVR_PATH, seq=seq, ev="dial"), method="POST", timeout=item.timeout
            )
            dial.number(item.number)
        elif isinstance(item, engine.NoInput):
            response.redirect(voices.url(IVR_PATH, seq=seq, ev="no_input"), method="POST")
        elif isinstance(item, engine.Hangup):
            response.hangup()
        else:  # pragma: no cover - the engine's instruction set is closed
            raise TypeError(f"cannot render {item!r}")
    return str(response.to_xml())


def render_rescue(rescue: Rescue, language: str, voices: Voices) -> str:
    """A response that needs nothing but the flow: apologise, take a message, thank, hang up."""
    state = engine.State(node="rescue", language=language)
    response = VoiceResponse()
    _speak(response, engine.say_prompt(rescue.prompt, state), voices)
    response.record(
        action=voices.url(RESCUE_RECORDING_PATH),
        method="POST",
        max_length=rescue.max_length,
        finish_on_key="#",
        timeout=10,
        play_beep=True,
        recording_status_callback=voices.url(RECORDING_STATUS_PATH),
        recording_status_callback_method="POST",
        recording_status_callback_event=RECORDING_EVENTS,
    )
    # Reached when the caller said nothing: Twilio then goes on to the next verb.
    _speak(response, engine.say_prompt(rescue.thanks, state), voices)
    response.hangup()
    return str(response.to_xml())


def render_thanks(rescue: Rescue, language: str, voices: Voices) -> str:
    state = engine.State(node="rescue", language=language)
    response = VoiceResponse()
    _speak(response, engine.say_prompt(rescue.thanks, state), voices)
    response.hangup()
    return str(response.to_xml())


def empty() -> str:
    """An answer for callbacks whose TwiML Twilio ignores (status callbacks)."""
    return str(VoiceResponse().to_xml())


def _speak(parent: VoiceResponse | TwimlGather, item: engine.Speech, voices: Voices) -> None:
    if isinstance(item, engine.Play):
        parent.play(voices.url(AUDIO_PATH + quote(item.audio)))
        return
    voice = voices.voice_th if item.language == "th" else voices.voice_en
    parent.say(item.text, language=SAY_LANGUAGES.get(item.language, "th-TH"), voice=voice)


def _gather(response: VoiceResponse, item: engine.Gather, seq: int, voices: Voices) -> None:
    gather = response.gather(
        action=voices.url(IVR_PATH, seq=seq, ev="gather"),
        method="POST",
        input="dtmf speech" if item.speech_language else "dtmf",
        timeout=item.timeout,
        num_digits=item.num_digits,
        finish_on_key=item.finish_on_key,
        language=item.speech_language,
        hints=item.hints,
        speech_timeout="auto" if item.speech_language else None,
        action_on_empty_result=item.action_on_empty_result or None,
    )
    # Prompts go inside the Gather so the caller can key during them.
    for prompt in item.prompts:
        _speak(gather, prompt, voices)
