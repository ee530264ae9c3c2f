"""A call simulator that plays Twilio's part against a running app.

Trainers and developers "call" the hotline with it, and the end-to-end tests and the benchmark drive it.
It requests our webhooks the way Twilio does (signed, with the standard voice parameters), follows the
TwiML it gets back verb by verb, and is strict where Twilio is strict: a call that would fail on Twilio
fails here, with the Twilio error code.

Usage::

    config = SimulatorConfig(connect_base="http://127.0.0.1:5001", public_base="https://hotline.example",
                             account_sid="AC...", auth_token="...")
    result = run_call(config, CallScript.parse("1,10#,1,3,record:5,1"))
    print(result.ended_by, result.spoken_text())

The package, one concern per module:

* :mod:`.script`: the caller's script (``1,10,1,1,record:5:#:hangup``) and the hang-up order spec;
  :mod:`.config`: :class:`SimulatorConfig`; :mod:`.events`: :class:`CallEvent`, :class:`CallResult`.
* :mod:`.player`: the TwiML player (one call), with the verbs in :mod:`.verbs` (Say, Play, Pause, Gather,
  an inbound Dial) and :mod:`.record` (Record); :mod:`.twiml` reads a response as Twilio does;
  :mod:`.sender` signs and sends the requests; :mod:`.end_of_call` delivers a hang-up's three requests.
* The fake Twilio: :mod:`.media_server` (:class:`MediaServer`: media, the REST reads, the create
  endpoints), :mod:`.resources` (recordings and calls held), :mod:`.messages`, :mod:`.calls_resource`
  (Calls.json), :mod:`.faults`; :mod:`.outbound` plays the calls Calls.json places (the call-back bridge).
* :mod:`.run`: :func:`run_call`; :mod:`.cli`: ``python -m telephony.simulator``; :mod:`.commands`: the app's
  ``simulate-call`` and ``demo`` commands; :mod:`.audio`: :func:`generate_wav`; :mod:`.twilio_api`: SIDs,
  dates and error bodies.

Twilio behaviour this package relies on (checked against Twilio's documentation and issue threads in the
search corpus; searched: "TwiML Record verb recordingStatusCallback no audio", "Gather actionOnEmptyResult
finishOnKey numDigits", "error 12200 schema validation", "error 12300 Invalid Content-Type", "11205 HTTP
connection failure", "Dial action DialCallStatus", "Reject reason", "voice webhook MIME types"):

* Signature: HMAC-SHA1 over the public URL (+ sorted POST params) with the auth token
  (``RequestValidator.compute_signature``). GET requests carry the parameters in the query string and are
  signed over the full URL only.
* The first webhook of an inbound call carries ``CallStatus=ringing`` (Twilio answers the call only once it
  has TwiML that is not ``<Reject>``); later requests carry ``in-progress``, and requests made after the
  caller hung up carry ``completed``. Configurable via ``SimulatorConfig.first_call_status``.
* Responses (docs "TwiML Voice: Your Response"): ``text/xml``, ``application/xml`` and also ``text/html``
  are parsed as TwiML; ``text/plain`` is read aloud then the call hangs up; ``audio/*`` is played then the
  call hangs up; any other type is error 12300. Twilio follows HTTP redirects like a browser (11215 when
  there are too many). Non-2xx is 11200 (the error dictionary also lists 11217 for 4xx/5xx; we report
  11200 and keep the status). Twilio waits 15 s in total for an answer, else 11205. A body that does not
  parse or whose root is not ``<Response>`` is 12100. Verb names are case sensitive; an unknown verb or an
  element nested where the schema does not allow it is 12200 (a "warning" in the dictionary, but the call
  ends with an application error), detected when the document is loaded, before any verb runs.
* ``<Gather>``: ``action`` defaults to the current document URL, ``method`` POST, ``finishOnKey`` ``#``
  (the empty string disables it), ``timeout`` 5, ``input`` ``dtmf``. If the timeout passes with no input,
  or the caller presses only the finish key, Twilio does not request the action: it goes on to the verb
  after the ``<Gather>``; ``actionOnEmptyResult="true"`` makes it post the action with empty ``Digits``.
  The finish key is not part of ``Digits``; with ``numDigits`` input ends when that many digits came.
  Speech posts ``SpeechResult`` and ``Confidence``.
* ``<Record>``: ``action`` defaults to the current document URL (unlike ``<Dial>``), ``finishOnKey``
  ``1234567890*#``, ``maxLength`` 3600, ``timeout`` 5. The action gets ``RecordingUrl``, ``RecordingSid``,
  ``RecordingDuration`` and ``Digits`` (the key, or ``hangup``). **If the recording is empty (caller
  silent), Twilio does not request the action URL and continues with the next verb of the current
  document.** ``recordingStatusCallbackEvent`` (``in-progress``, ``completed``, ``absent``; default
  ``completed``) chooses the callbacks; ``absent`` is the status of a recording with no audio (too short or
  silent). The callback is asynchronous: here it is posted right after the action response arrived, so it
  reaches the app after the action webhook, as it may on Twilio. After a caller hangs up the action is still
  requested (``Digits=hangup``, or the key pressed just before: ``record:5:#:hangup``) but the TwiML it
  returns is not executed.
* End of a call (PLATFORM-NOTES, "End of a call has no order"): when the caller hangs up with a recording
  outstanding, the ``<Record>`` action, the recording status callback and the call status callback have
  no promised order and may race on different threads. ``SimulatorConfig.hangup_order`` (a
  :class:`HangupOrder`) plays any fixed order, a lost request, or all three at once.
* REST reads (twilio-python's fixtures for these resources; docs "Recording resource", "Call resource",
  "error 20003"): ``GET …/Recordings.json`` (CallSid, ``DateCreated``/``DateCreated<``/``DateCreated>``,
  PageSize, Page, PageToken; newest first; ``next_page_uri`` relative to the API base) and
  ``GET …/Calls/{CallSid}.json``. Good credentials on another account's path are 20003 (401), as for a
  subaccount's credentials on its parent.
* ``<Dial>``: no default ``action``; without one the call goes on with the next verb. With one, it posts
  ``DialCallStatus`` (``completed``, ``busy``, ``no-answer``, ``failed``, ``canceled``), ``DialCallSid``
  and ``DialCallDuration``, and verbs after the ``<Dial>`` are unreachable.
* ``<Redirect>`` defaults to POST. ``<Reject>`` as the first verb leaves the call unanswered: status
  ``busy`` (``reason="busy"``) or ``no-answer`` (default ``rejected``). The end of a document hangs up.
* Media: ``RecordingUrl`` has no extension (``.wav`` default, ``.mp3`` also exists), and with "enforce HTTP
  auth on media" it needs basic auth (account SID, auth token); Twilio answers 401 with
  ``WWW-Authenticate: Basic realm="Twilio API"``. ``DELETE`` on the recording path removes it.
"""

from telephony.simulator.audio import generate_wav
from telephony.simulator.config import SimulatorConfig
from telephony.simulator.events import CallEvent, CallResult
from telephony.simulator.media_server import MediaServer
from telephony.simulator.run import run_call
from telephony.simulator.script import CallScript, HangupOrder, ScriptError

__all__ = [
    "CallEvent",
    "CallResult",
    "CallScript",
    "HangupOrder",
    "MediaServer",
    "ScriptError",
    "SimulatorConfig",
    "generate_wav",
    "run_call",
]
