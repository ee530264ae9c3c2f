"""What the simulator is told: where the app is, the public URL it signs against, and Twilio's account."""

from __future__ import annotations

from dataclasses import dataclass

from telephony.simulator.script import DEFAULT_HANGUP_ORDER, HangupOrder


@dataclass(frozen=True)
class SimulatorConfig:
    """Where the app is, what it believes its public URL is, and the Twilio account it expects."""

    connect_base: str
    public_base: str
    account_sid: str
    auth_token: str
    from_number: str = "+66812345678"
    to_number: str = "+6621266565"
    max_requests: int = 200
    timeout_s: float = 15.0
    from_country: str = "TH"
    to_country: str = "TH"
    voice_path: str = "/twilio/voice"
    status_path: str = "/twilio/status"
    first_call_status: str = "ringing"
    recording_wav: bytes | None = None
    fetch_media: bool = True
    # Which end-of-call requests arrive, and how, when the caller hangs up with a recording outstanding.
    hangup_order: HangupOrder = DEFAULT_HANGUP_ORDER

    def public_url(self, path: str) -> str:
        return self.public_base.rstrip("/") + "/" + path.lstrip("/")
