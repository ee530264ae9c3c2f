"""The simulator's own command line: ``python -m telephony.simulator --script "1,2,record:5"``."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence

from telephony.simulator.config import SimulatorConfig
from telephony.simulator.events import CallEvent
from telephony.simulator.media_server import MediaServer
from telephony.simulator.run import run_call
from telephony.simulator.script import (
    DEFAULT_HANGUP_ORDER,
    HANGUP_HELP,
    SCRIPT_GRAMMAR,
    CallScript,
    HangupOrder,
)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m telephony.simulator", description="Call the hotline app the way Twilio would."
    )
    parser.add_argument("--connect", default=os.environ.get("SIM_CONNECT_BASE", "http://127.0.0.1:5001"))
    parser.add_argument("--public", default=os.environ.get("PUBLIC_BASE_URL"))
    parser.add_argument("--account-sid", default=os.environ.get("TWILIO_ACCOUNT_SID"))
    parser.add_argument("--auth-token", default=os.environ.get("TWILIO_AUTH_TOKEN"))
    parser.add_argument("--from", dest="from_number", default="+66812345678")
    parser.add_argument("--script", default="", help=SCRIPT_GRAMMAR)
    parser.add_argument(
        "--interactive", action="store_true", help="ask on the terminal when the script runs out"
    )
    parser.add_argument("--recording", help="WAV file to use as the caller's recorded audio")
    parser.add_argument(
        "--hangup-order",
        default=str(DEFAULT_HANGUP_ORDER),
        help="when the caller hangs up while recording (or right after #): the end-of-call requests, "
        f"e.g. 'action,status,recording' or 'concurrent'; {HANGUP_HELP}",
    )
    args = parser.parse_args(argv)
    if not args.account_sid or not args.auth_token:
        parser.error("--account-sid and --auth-token (or TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN) are required")
    try:
        hangup_order = HangupOrder.parse(args.hangup_order)
    except ValueError as exc:
        parser.error(f"--hangup-order: {exc}")
    wav = None
    if args.recording:
        with open(args.recording, "rb") as fh:
            wav = fh.read()
    config = SimulatorConfig(
        connect_base=args.connect,
        public_base=args.public or args.connect,
        account_sid=args.account_sid,
        auth_token=args.auth_token,
        from_number=args.from_number,
        recording_wav=wav,
        hangup_order=hangup_order,
    )
    script = CallScript.parse(args.script, input_fn=input if args.interactive else None)

    def show(event: CallEvent) -> None:
        print(event.describe(), flush=True)

    with MediaServer(config.account_sid, config.auth_token) as media:
        result = run_call(config, script, media=media, on_event=show)
    print(f"call {result.call_sid} ended by {result.ended_by} ({result.call_status}, {result.duration_s}s)")
    return 0 if result.ended_by != "error" else 1
