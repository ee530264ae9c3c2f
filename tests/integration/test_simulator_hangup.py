"""The simulator's end of a call: the hang-up tokens and the order of Twilio's three end-of-call requests.

Played against a tiny threaded HTTP stand-in (tests/support/sim_standin.py) that checks every
signature and records when each request arrived and when it was answered. The server side's handling of
these orders is not tested here: only that the simulator sends what it says, in the order it says.
"""

from __future__ import annotations

import itertools
import re
import subprocess
import sys
import threading

import pytest
from flask import Flask

from telephony.simulator.cli import main
from telephony.simulator.events import CallResult
from telephony.simulator.media_server import MediaServer
from telephony.simulator.run import run_call
from telephony.simulator.script import HANGUP_PURPOSES, HANGUP_REQUESTS, CallScript, HangupOrder, parse_token
from tests.support.sim_standin import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    END_OF_CALL_PATHS,
    NOTHING_HEARD,
    RECORDED,
    RECORDING_STATUS,
    STATUS,
    THANKS,
    VOICE,
    StandIn,
    record_twiml,
    serving,
)

ORDERS = [tuple(p) for p in itertools.permutations(HANGUP_REQUESTS)]
HANGUPS = {"record:4:hangup": "hangup", "record:4:#:hangup": "#"}


def sent_purposes(result: CallResult) -> list[str | None]:
    return [e.purpose for e in result.end_of_call()]


# --------------------------------------------------------------------------------------------------
# Script tokens
# --------------------------------------------------------------------------------------------------


def test_record_key_then_hangup_token_parses() -> None:
    hash_then_gone = parse_token("record:7:#:hangup")
    star_then_gone = parse_token("record:3:*:HANGUP")
    during = parse_token("record:7:hangup")
    assert (hash_then_gone.seconds, hash_then_gone.finish_key, hash_then_gone.hangup_after) == (7, "#", True)
    assert (star_then_gone.finish_key, star_then_gone.hangup_after) == ("*", True)
    assert (during.hangup_during, during.hangup_after) == (True, False)
    assert not parse_token("record:7:#").hangup_after


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        ("record:5:hangup:hangup", "'hangup' twice"),
        ("record:5:#:#", "malformed record token"),
        ("record:5:#:hangup:1", "malformed record token"),
    ],
)
def test_bad_record_tokens_are_named_with_the_grammar(token: str, reason: str) -> None:
    with pytest.raises(
        ValueError, match=re.escape(f"bad script token {token!r} at position 2: {reason}")
    ) as info:
        CallScript.parse(f"1,{token}")
    assert "record:SECONDS:KEY:hangup" in str(info.value)


# --------------------------------------------------------------------------------------------------
# The order, one request after the other
# --------------------------------------------------------------------------------------------------


def test_by_default_the_action_then_the_recording_then_the_status_arrive() -> None:
    with serving(StandIn()) as app:
        result = run_call(app.config(), CallScript.parse("record:4:hangup"))

    assert app.paths() == [VOICE, RECORDED, RECORDING_STATUS, STATUS]
    assert sent_purposes(result) == ["record-action", "recording-status", "status-callback"]
    assert [e.order for e in result.end_of_call()] == [1, 2, 3]
    assert result.ended_by == "caller-hangup"


@pytest.mark.parametrize("token", sorted(HANGUPS))
@pytest.mark.parametrize("order", ORDERS, ids=",".join)
def test_each_fixed_order_is_delivered_in_turn_signed_and_once(order: tuple[str, ...], token: str) -> None:
    with serving(StandIn(hold_s=0.03)) as app:
        result = run_call(app.config(), CallScript.parse(token), hangup_order=",".join(order))

    received = app.end_of_call()
    assert [h.path for h in received] == [END_OF_CALL_PATHS[name] for name in order]
    # In turn: each request goes out only after the answer to the one before.
    for before, after in itertools.pairwise(received):
        assert after.arrived >= before.departed, (before.path, after.path)
    assert all(h.signature_ok for h in app.hits)
    assert sent_purposes(result) == [HANGUP_PURPOSES[n] for n in order]
    answers = {"action": 200, "recording": 204, "status": 204}  # what the stand-in answers each with
    assert [e.status for e in result.end_of_call()] == [answers[name] for name in order]

    (action,) = app.to(RECORDED)
    (recording,) = app.to(RECORDING_STATUS)
    (status,) = app.to(STATUS)
    digits = HANGUPS[token]
    assert action.params["Digits"] == digits
    # A key goes in while the call is up; only Digits=hangup is news sent after the caller left.
    assert action.params["CallStatus"] == ("completed" if digits == "hangup" else "in-progress")
    assert action.params["RecordingDuration"] == "4"
    assert recording.params["RecordingStatus"] == "completed"
    assert recording.params["RecordingSid"] == action.params["RecordingSid"] == result.recordings[0]
    assert recording.params["RecordingUrl"] == action.params["RecordingUrl"]
    assert (status.params["CallStatus"], status.params["CallSid"]) == ("completed", result.call_sid)
    assert int(status.params["CallDuration"]) >= 4
    assert THANKS not in result.spoken_text()  # the action's TwiML is not played after a hang-up
    assert result.ended_by == "caller-hangup"


@pytest.mark.parametrize(
    ("order", "lost"),
    [
        ("action,status", ["recording"]),
        ("status", ["action", "recording"]),
        ("recording,action", ["status"]),
        ("none", ["action", "recording", "status"]),
    ],
)
def test_a_request_left_out_never_arrives(order: str, lost: list[str]) -> None:
    with serving(StandIn()) as app:
        result = run_call(app.config(), CallScript.parse("record:3:#:hangup"), hangup_order=order)

    expected = list(HangupOrder.parse(order).requests)
    assert [h.path for h in app.end_of_call()] == [END_OF_CALL_PATHS[n] for n in expected]
    for name in lost:
        assert app.to(END_OF_CALL_PATHS[name]) == []
    notes = [e.text for e in result.of_kind("end-of-call")]
    assert sorted(n.split(" ", 1)[0] for n in notes if "never sent" in n) == sorted(
        HANGUP_PURPOSES[n] for n in lost
    )
    assert len(app.to(STATUS)) == (0 if "status" in lost else 1)  # never a second one at the end


def test_a_silent_caller_who_hangs_up_at_the_beep_gets_absent_in_the_order_and_no_action() -> None:
    with serving(StandIn()) as app:
        result = run_call(app.config(), CallScript.parse("hangup"), hangup_order="status,action,recording")

    assert app.paths() == [VOICE, STATUS, RECORDING_STATUS]
    (absent,) = app.to(RECORDING_STATUS)
    assert (absent.params["RecordingStatus"], absent.params["RecordingDuration"]) == ("absent", "0")
    assert sent_purposes(result) == ["status-callback", "recording-status"]
    assert result.recordings == []


def test_a_key_that_does_not_end_the_recording_then_a_hangup_is_digits_hangup() -> None:
    with serving(StandIn(voice_twiml=record_twiml(finish_on_key="*"))) as app:
        run_call(app.config(), CallScript.parse("record:3:#:hangup"), hangup_order="status,action")

    assert [h.path for h in app.end_of_call()] == [STATUS, RECORDED]
    assert app.to(RECORDED)[0].params["Digits"] == "hangup"


@pytest.mark.parametrize("order", ["status,recording,action", "concurrent"])
def test_order_applies_only_to_a_hang_up_with_a_recording_outstanding(order: str) -> None:
    # Recorded, then the caller stays: the action's TwiML plays and the status comes at the very end.
    with serving(StandIn()) as app:
        result = run_call(app.config(), CallScript.parse("record:3"), hangup_order=order)

    assert app.paths() == [VOICE, RECORDED, RECORDING_STATUS, STATUS]
    assert result.end_of_call() == []
    assert result.spoken_text().splitlines()[-1] == THANKS


def test_silence_at_the_record_goes_on_with_the_next_verb_and_sends_absent_at_once() -> None:
    with serving(StandIn()) as app:
        result = run_call(app.config(), CallScript.parse("-"), hangup_order="status,recording")

    assert app.paths() == [VOICE, RECORDING_STATUS, STATUS]
    assert result.spoken_text().splitlines()[-1] == NOTHING_HEARD
    assert result.end_of_call() == []


# --------------------------------------------------------------------------------------------------
# Concurrent delivery
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("token", sorted(HANGUPS))
@pytest.mark.parametrize("order", ["concurrent", "concurrent:spread=4,seed=11"])
def test_concurrent_requests_are_all_in_flight_at_once(order: str, token: str) -> None:
    # The server holds each end-of-call request until all three have arrived: requests sent one after
    # the other would break the barrier (after 5 s) instead of passing it.
    with serving(StandIn(gate=threading.Barrier(3))) as app:
        result = run_call(app.config(), CallScript.parse(token), hangup_order=order)

    received = app.end_of_call()
    assert sorted(h.path for h in received) == sorted(END_OF_CALL_PATHS.values())
    assert all(h.waited_at_gate for h in received), [(h.path, h.waited_at_gate) for h in received]
    assert app.max_in_flight == 3
    assert max(h.arrived for h in received) < min(h.departed for h in received)
    assert len({h.thread for h in received}) == 3
    assert all(h.signature_ok for h in app.hits)
    sent = result.end_of_call()
    assert sorted(e.order or 0 for e in sent) == [1, 2, 3]
    assert sorted(sent_purposes(result)) == sorted(HANGUP_PURPOSES.values())
    assert all(e.status in (200, 204) for e in sent)
    assert app.to(RECORDED)[0].params["Digits"] == HANGUPS[token]
    assert len(app.to(STATUS)) == 1
    assert not result.errors()


def test_concurrent_subset_sends_only_the_named_requests_together() -> None:
    with serving(StandIn(gate=threading.Barrier(2))) as app:
        result = run_call(
            app.config(), CallScript.parse("record:2:hangup"), hangup_order="concurrent:action,status"
        )

    received = app.end_of_call()
    assert sorted(h.path for h in received) == sorted([RECORDED, STATUS])
    assert all(h.waited_at_gate for h in received)
    assert any("recording-status never sent" in e.text for e in result.of_kind("end-of-call"))


def test_a_seeded_spread_gives_the_same_small_delays_every_time() -> None:
    order = HangupOrder.parse("concurrent:spread=4,seed=7")
    delays = order.delays_s(3)
    assert delays == HangupOrder(concurrent=True, spread_ms=4, seed=7).delays_s(3)
    assert all(0 <= d <= 0.004 for d in delays)
    assert len(set(delays)) == 3
    assert HangupOrder.parse("concurrent:spread=4,seed=8").delays_s(3) != delays
    assert HangupOrder.parse("concurrent").delays_s(3) == [0.0, 0.0, 0.0]


# --------------------------------------------------------------------------------------------------
# The order's text form, its errors, and the command line
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    ["action,recording,status", "status,action", "recording", "none", "concurrent",
     "concurrent:action,status", "concurrent:spread=4,seed=7"],
)  # fmt: skip
def test_order_text_round_trips(text: str) -> None:
    assert str(HangupOrder.parse(text)) == text
    assert HangupOrder.parse(str(HangupOrder.parse(text))) == HangupOrder.parse(text)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("action,hangup", "unknown request 'hangup'"),
        ("status,action,status", "'status' named twice"),
        ("", "no request named"),
        ("action,status,spread=3", "a spread needs concurrent delivery"),
        ("concurrent:spread=lots", "'spread=lots' is not a number"),
        ("concurrent:spread=5000", "the spread must be 0 to 1000 ms"),
    ],
)
def test_a_bad_order_is_refused_naming_the_value(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=re.escape(f"bad hang-up order {text!r}: {problem}")):
        HangupOrder.parse(text)


def test_a_bad_order_built_in_python_is_refused_too() -> None:
    with pytest.raises(
        ValueError, match=re.escape("bad hang-up order 'action,action': 'action' named twice")
    ):
        HangupOrder(requests=("action", "action"))
    with pytest.raises(ValueError, match=re.escape("unknown request 'voicemail'")):
        HangupOrder.of(["status", "voicemail"])
    assert HangupOrder.of(["status", "action"]) == HangupOrder(requests=("status", "action"))


def test_the_module_cli_prints_each_end_of_call_request_with_its_place_and_answer(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with serving(StandIn()) as app:
        code = main(
            ["--connect", app.base, "--account-sid", ACCOUNT_SID, "--auth-token", AUTH_TOKEN,
             "--script", "record:3:#:hangup", "--hangup-order", "status,recording,action"]
        )  # fmt: skip

    out = capsys.readouterr().out
    assert code == 0
    assert "END-OF-CALL status, recording, action in turn" in out
    lines = [line for line in out.splitlines() if "[end of call #" in line]
    assert [re.search(r"\((\S+)\) \[end of call #(\d)", line).groups() for line in lines] == [
        ("status-callback", "1"),
        ("recording-status", "2"),
        ("record-action", "3"),
    ]
    assert lines[0].endswith(" ms") and "-> 204" in lines[0] and "-> 200" in lines[2]


def test_the_module_cli_refuses_a_bad_order(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--account-sid", ACCOUNT_SID, "--auth-token", AUTH_TOKEN, "--hangup-order", "action,action"])
    assert info.value.code == 2
    assert "bad hang-up order 'action,action': 'action' named twice" in capsys.readouterr().err


def test_recordings_made_in_a_hang_up_are_held_by_the_fake_twilio_whatever_arrived() -> None:
    # Twilio gave up on the action and the recording callback: the recording is still there to reconcile.
    with serving(StandIn()) as app, MediaServer(ACCOUNT_SID, AUTH_TOKEN) as media:
        result = run_call(
            app.config(), CallScript.parse("record:5:hangup"), media=media, hangup_order="status"
        )
        (sid,) = result.recordings
        assert media.has(sid)
        held = media.recording_resource(sid)
        assert held is not None
        assert (held["call_sid"], held["duration"], held["status"]) == (result.call_sid, "5", "completed")
        assert app.to(RECORDED) == [] and app.to(RECORDING_STATUS) == []


# --------------------------------------------------------------------------------------------------
# flask --app app simulate-call --hangup-order (the real app; only what the simulator sends is asserted)
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("order", "purposes"),
    [
        ("status,recording,action", ["status-callback", "recording-status", "record-action"]),
        ("action,status", ["record-action", "status-callback"]),
    ],
)
def test_simulate_call_command_prints_the_end_of_call_in_its_order(
    app: Flask, order: str, purposes: list[str]
) -> None:
    done = app.test_cli_runner().invoke(
        args=["simulate-call", "--keys", "1,10,1,1,record:6:#:hangup", "--hangup-order", order, "--quiet"]
    )

    assert done.exit_code == 0, done.output
    assert "ended: caller-hangup" in done.output
    summary = next(line for line in done.output.splitlines() if line.startswith("end of call"))
    assert summary.startswith(f"end of call (hang-up order {order}): ")
    assert re.findall(r"(\d)\. (\S+) -> \d{3}", summary) == [(str(n), p) for n, p in enumerate(purposes, 1)]
    if "recording" not in order:
        assert "recording-status never sent" in done.output


def test_simulate_call_command_refuses_a_bad_order_naming_it(app: Flask) -> None:
    done = app.test_cli_runner().invoke(
        args=["simulate-call", "--keys", "1", "--hangup-order", "status,recording,status"]
    )

    assert done.exit_code == 2
    assert "bad hang-up order 'status,recording,status': 'status' named twice" in done.output


def test_python_dash_m_runs_the_package_cli() -> None:
    # The simulator is a package: `python -m telephony.simulator` must reach the same CLI through __main__.
    with serving(StandIn()) as app:
        done = subprocess.run(
            [sys.executable, "-m", "telephony.simulator", "--connect", app.base,
             "--account-sid", ACCOUNT_SID, "--auth-token", AUTH_TOKEN, "--script", "record:3"],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert app.paths() == [VOICE, RECORDED, RECORDING_STATUS, STATUS]
        assert all(hit.signature_ok for hit in app.hits)
    assert done.returncode == 0, done.stderr
    assert f"SAY [th-TH / Google.th-TH-Standard-A] {THANKS}" in done.stdout
    assert re.search(r"^call CA[0-9a-f]{32} ended by \S+ \(completed, \d+s\)$", done.stdout, re.M)
