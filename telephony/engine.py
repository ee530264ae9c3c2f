"""The IVR engine: a pure function of (flow, call state, caller input) to the next step."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Literal

from telephony.flow import (
    FOLLOWUP_VAR,
    Branch,
    BranchNode,
    DigitsNode,
    Flow,
    HangupNode,
    LookupNode,
    MenuNode,
    Node,
    Prompt,
    RecordNode,
    SayNode,
    SubmitNode,
    TransferNode,
)
from telephony.validators import (
    DIGIT_VALIDATORS,
    REFERENCE_LENGTH,
    SPEECH_VALIDATORS,
    case_reference,
    province_hints,
    speak_digits,
)

MAX_CHAIN = 64
DIAL_ANSWERED = "completed"


# ---- what the engine says to do (rendered to TwiML elsewhere) ---------------------------------


@dataclass(frozen=True)
class Say:
    text: str
    language: str


@dataclass(frozen=True)
class Play:
    audio: str  # file name under ivr_flows/audio


Speech = Say | Play


@dataclass(frozen=True)
class Gather:
    prompts: tuple[Speech, ...]
    timeout: int
    num_digits: int | None = None
    finish_on_key: str = ""  # "" disables the finish key, so every key reaches us
    speech_language: str | None = None
    hints: str | None = None
    action_on_empty_result: bool = False


@dataclass(frozen=True)
class Record:
    max_length: int
    finish_on_key: str
    timeout: int


@dataclass(frozen=True)
class Dial:
    number: str
    timeout: int


@dataclass(frozen=True)
class NoInput:
    """Continue at the engine's no-input handler (rendered as a Redirect after a Gather or Record)."""


@dataclass(frozen=True)
class Hangup:
    pass


Instruction = Say | Play | Gather | Record | Dial | NoInput | Hangup


# ---- what the caller did ------------------------------------------------------------------------

InputKind = Literal["gather", "no_input", "record", "dial"]


@dataclass(frozen=True)
class Recording:
    sid: str
    url: str
    duration_s: int  # -1 when Twilio did not say


@dataclass(frozen=True)
class CallerInput:
    kind: InputKind
    digits: str = ""
    speech: str | None = None
    recording: Recording | None = None
    dial_status: str | None = None
    caller_hung_up: bool = False


@dataclass(frozen=True)
class Context:
    """Facts from outside the flow that the engine may look at: never read from globals."""

    now: datetime
    caller_id_present: bool
    transfer_number: str | None


@dataclass(frozen=True)
class State:
    node: str
    language: str
    phase: str = "ask"  # ask | confirm
    tries: int = 0
    rerecords: int = 0
    vars: Mapping[str, str] = field(default_factory=dict)
    pending: Mapping[str, str] = field(default_factory=dict)  # value awaiting confirmation + its readback

    def to_json(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "language": self.language,
            "phase": self.phase,
            "tries": self.tries,
            "rerecords": self.rerecords,
            "vars": dict(self.vars),
            "pending": dict(self.pending),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> State:
        return cls(
            node=str(data["node"]),
            language=str(data.get("language", "th")),
            phase=str(data.get("phase", "ask")),
            tries=int(data.get("tries", 0)),
            rerecords=int(data.get("rerecords", 0)),
            vars={str(k): str(v) for k, v in dict(data.get("vars", {})).items()},
            pending={str(k): str(v) for k, v in dict(data.get("pending", {})).items()},
        )


@dataclass(frozen=True)
class FlowEvent:
    """One step on the caller's path, for the case's call events. Never carries phone digits."""

    node: str
    kind: str
    detail: Mapping[str, str] = field(default_factory=dict)


Effect = Literal["open_case", "attach_message", "lookup_case"]


@dataclass(frozen=True)
class Outcome:
    state: State
    instructions: tuple[Instruction, ...]
    events: tuple[FlowEvent, ...]
    # Set when the engine needs the case service, which carries the effect out and calls resume():
    # open_case (a submit node: put the new case's reference into vars["reference"]), attach_message
    # (a submit node: add the recorded message to the case named by vars[FOLLOWUP_VAR]), lookup_case
    # (a lookup node: find the case whose reference is pending["value"], resume with its standing).
    effect: Effect | None = None
    ended: bool = False


class EngineError(RuntimeError):
    """The state does not fit the flow (for example a node removed since the call began)."""


# ---- public functions ---------------------------------------------------------------------------


def start(flow: Flow, ctx: Context) -> Outcome:
    """The first step of a new call."""
    state = State(node=flow.start, language=flow.default_language)
    return _run(flow, state, ctx, [], [FlowEvent(flow.start, "call_started")])


def advance(flow: Flow, state: State, inp: CallerInput, ctx: Context) -> Outcome:
    """Apply what the caller did at the current node and run to the next point of waiting."""
    node = _node(flow, state.node)
    handler = _INPUT_HANDLERS.get(type(node))
    if handler is None:
        # Input for a node that does not wait (a stale or forged request): just say where we are.
        return _run(flow, state, ctx, [], [FlowEvent(node.id, "unexpected_input", {"kind": inp.kind})])
    return handler(flow, node, state, inp, ctx)


def resume(
    flow: Flow, state: State, ctx: Context, *, standing: str | None = None, locked: bool = False
) -> Outcome:
    """Continue after the effect of a submit or lookup node was carried out.

    After lookup_case, `standing` is the found case's standing (one of flow.STANDINGS), or None when
    no case has the reference: that counts as a wrong try. `locked`: the calling number has used up its
    wrong references for the hour; the caller hears so (too_many) and the call takes on_fail.
    """
    node = _node(flow, state.node)
    if isinstance(node, LookupNode) and state.phase == "lookup":
        if locked:
            return _on_lookup_locked(flow, node, state, ctx)
        return _on_lookup_result(flow, node, state, ctx, standing)
    if not isinstance(node, SubmitNode):
        raise EngineError(f"resume() at node {node.id!r}, which is not a submit node or a pending lookup")
    return _run(flow, replace(state, node=node.next, phase="ask", tries=0), ctx, [], [])


def render_current(flow: Flow, state: State, ctx: Context) -> Outcome:
    """Say the current node again (for a call whose last answer was lost)."""
    return _run(flow, state, ctx, [], [])


def say_prompt(prompt: Prompt, state: State) -> Speech:
    """The prompt in the call's language (falling back to Thai), with placeholders filled in."""
    lang = state.language if state.language in prompt.text else "th"
    if lang in prompt.audio:
        return Play(prompt.audio[lang])
    text = prompt.text[lang]
    values = _SpeakVars(state, lang)
    return Say(text.format_map(values), lang)


# ---- internals ------------------------------------------------------------------------------------


class _SpeakVars(dict[str, str]):
    def __init__(self, state: State, lang: str) -> None:
        super().__init__()
        self.state, self.lang = state, lang

    def __missing__(self, key: str) -> str:
        if key == "value":
            return self.state.pending.get(f"spoken_{self.lang}", "")
        if key == "reference":
            return speak_digits(self.state.vars.get("reference", ""), self.lang)
        if key == "followup_reference":
            return speak_digits(self.state.vars.get(FOLLOWUP_VAR, ""), self.lang)
        if key == "province":
            return self.state.vars.get(f"province_name_{self.lang}", "")
        return ""


def _node(flow: Flow, node_id: str) -> Node:
    try:
        return flow.nodes[node_id]
    except KeyError:
        raise EngineError(
            f"call state names node {node_id!r}, which flow {flow.name!r} does not have"
        ) from None


def _take(
    state: State, branch: Branch, events: list[FlowEvent], said: list[Instruction], node: Node
) -> State:
    """Follow a branch: set its variables and language, say its prompt, move to its next node."""
    new_vars = dict(state.vars)
    new_vars.update(branch.set)
    language = branch.language or state.language
    if branch.language and branch.language != state.language:
        events.append(FlowEvent(node.id, "language", {"language": branch.language}))
    for var, value in branch.set.items():
        events.append(FlowEvent(node.id, "set", {var: value}))
    moved = replace(state, vars=new_vars, language=language)
    if branch.prompt is not None:
        said.append(say_prompt(branch.prompt, moved))
    if branch.repeat or branch.next is None:
        return moved
    return replace(moved, node=branch.next, phase="ask", tries=0, rerecords=0, pending={})


def _run(flow: Flow, state: State, ctx: Context, said: list[Instruction], events: list[FlowEvent]) -> Outcome:
    """Render nodes from `state.node` until one waits for the caller, ends the call, or submits."""
    for _ in range(MAX_CHAIN):
        node = _node(flow, state.node)
        if isinstance(node, SayNode):
            said.append(say_prompt(node.prompt, state))
            state = replace(state, node=node.next, phase="ask", tries=0)
            continue
        if isinstance(node, BranchNode):
            taken = node.then if _condition(node.condition, ctx) else node.otherwise
            events.append(FlowEvent(node.id, "branch", {"to": str(taken.next)}))
            state = _take(state, taken, events, said, node)
            continue
        if isinstance(node, SubmitNode):
            events.append(FlowEvent(node.id, "submit"))
            return Outcome(state, tuple(said), tuple(events), effect=node.effect)
        if isinstance(node, HangupNode):
            if node.prompt:
                said.append(say_prompt(node.prompt, state))
            events.append(FlowEvent(node.id, "hangup"))
            return Outcome(state, (*said, Hangup()), tuple(events), ended=True)
        if isinstance(node, TransferNode):
            open_now = node.hours.is_open(ctx.now)
            if not open_now or not ctx.transfer_number:
                reason = "closed" if not open_now else "no_number"
                events.append(FlowEvent(node.id, "transfer_unavailable", {"reason": reason}))
                state = _take(state, node.closed, events, said, node)
                continue
            said.append(say_prompt(node.prompt, state))
            events.append(FlowEvent(node.id, "transfer_dial"))
            return Outcome(state, (*said, Dial(ctx.transfer_number, node.dial_timeout)), tuple(events))
        return Outcome(state, (*said, *_wait(node, state)), tuple(events))
    raise EngineError(f"flow {flow.name!r} ran {MAX_CHAIN} nodes without waiting for the caller")


def _condition(name: str, ctx: Context) -> bool:
    if name == "caller_id_present":
        return ctx.caller_id_present
    raise EngineError(f"unknown condition {name!r}")


def _confirm_gather(
    node: DigitsNode | RecordNode, state: State, lead: list[Speech]
) -> tuple[Instruction, ...]:
    assert node.confirm is not None
    prompts = (*lead, say_prompt(node.confirm.prompt, state))
    return (Gather(prompts, timeout=8, num_digits=1), NoInput())


def _wait(node: Node, state: State, lead: tuple[Speech, ...] = ()) -> tuple[Instruction, ...]:
    """The instructions that ask the caller for input at a waiting node."""
    if isinstance(node, MenuNode):
        return (
            Gather((*lead, say_prompt(node.prompt, state)), timeout=node.timeout, num_digits=1),
            NoInput(),
        )
    if isinstance(node, DigitsNode):
        if state.phase == "confirm":
            return _confirm_gather(node, state, list(lead))
        speech_lang = node.speech.language if node.speech else None
        hints = province_hints() if node.speech and node.speech.hints == "provinces" else None
        return (
            Gather(
                (*lead, say_prompt(node.prompt, state)),
                timeout=node.timeout,
                num_digits=node.length,
                finish_on_key=node.finish_key or "",
                speech_language=speech_lang,
                hints=hints,
            ),
            NoInput(),
        )
    if isinstance(node, RecordNode):
        if state.phase == "confirm":
            return _confirm_gather(node, state, list(lead))
        return (
            *lead,
            say_prompt(node.prompt, state),
            Record(node.max_length, node.finish_key, node.silence_timeout),
            NoInput(),
        )
    if isinstance(node, LookupNode):
        return (
            Gather(
                (*lead, say_prompt(node.prompt, state)),
                timeout=node.timeout,
                num_digits=REFERENCE_LENGTH,
                finish_on_key="#",  # a caller who keyed too few digits need not wait for the timeout
            ),
            NoInput(),
        )
    raise EngineError(f"node {node.id!r} of type {node.type!r} does not wait for input")


def _retry_or_fail(
    flow: Flow,
    node: MenuNode | DigitsNode | RecordNode | LookupNode,
    state: State,
    ctx: Context,
    reason: str,
    fail_branch: Branch | None,
    events: list[FlowEvent],
) -> Outcome:
    """Count a failed try; re-ask with the matching hint, or take the failure branch when tries run out."""
    tries = state.tries + 1
    events.append(FlowEvent(node.id, reason, {"try": str(tries)}))
    said: list[Instruction] = []
    hint = node.no_input if reason == "no_input" else node.invalid
    if reason == "not_found" and isinstance(node, LookupNode):
        hint = node.not_found
    if tries >= node.tries and fail_branch is not None:
        events.append(FlowEvent(node.id, "tries_exhausted"))
        moved = _take(replace(state, tries=tries), fail_branch, events, said, node)
        return _run(flow, moved, ctx, said, events)
    lead = (say_prompt(hint, state),) if hint else ()
    retried = replace(state, tries=tries)
    return Outcome(retried, _wait(node, retried, lead), tuple(events))


def _on_menu(flow: Flow, node: Node, state: State, inp: CallerInput, ctx: Context) -> Outcome:
    assert isinstance(node, MenuNode)
    events: list[FlowEvent] = []
    key = inp.digits[:1] if inp.kind == "gather" else ""
    if inp.kind != "gather" or not key:
        return _retry_or_fail(flow, node, state, ctx, "no_input", node.default, events)
    branch = node.options.get(key)
    if branch is None:
        return _retry_or_fail(flow, node, state, ctx, "invalid", node.default, events)
    events.append(FlowEvent(node.id, "key", {"key": key}))
    said: list[Instruction] = []
    moved = _take(state, branch, events, said, node)
    if branch.repeat or branch.next is None or branch.next == node.id:
        # Repeat (or switch language) and ask again without spending a try.
        moved = replace(moved, node=node.id, tries=state.tries)
        return Outcome(moved, (*said, *_wait(node, moved)), tuple(events))
    return _run(flow, moved, ctx, said, events)


def _on_digits(flow: Flow, node: Node, state: State, inp: CallerInput, ctx: Context) -> Outcome:
    assert isinstance(node, DigitsNode)
    events: list[FlowEvent] = []
    if state.phase == "confirm":
        return _on_confirm(flow, node, state, inp, ctx, events)
    if inp.kind == "gather" and node.skip and inp.digits == node.skip[0]:
        events.append(FlowEvent(node.id, "skipped"))
        said: list[Instruction] = []
        return _run(flow, _take(state, node.skip[1], events, said, node), ctx, said, events)
    accepted = None
    if inp.kind == "gather" and inp.speech and node.speech:
        accepted = SPEECH_VALIDATORS[node.validate](inp.speech)
        via = "speech"
    elif inp.kind == "gather" and inp.digits:
        accepted = DIGIT_VALIDATORS[node.validate](inp.digits)
        via = "keys"
    else:
        return _retry_or_fail(flow, node, state, ctx, "no_input", node.on_fail, events)
    if accepted is None:
        return _retry_or_fail(flow, node, state, ctx, "invalid", node.on_fail, events)
    detail = {"via": via} if node.sensitive else {"via": via, "value": accepted.value}
    events.append(FlowEvent(node.id, "entered", detail))
    pending = {"value": accepted.value, **{f"spoken_{k}": v for k, v in accepted.spoken.items()}}
    if node.confirm is None:
        return _run(flow, _store(state, node, pending), ctx, [], events)
    confirming = replace(state, phase="confirm", tries=0, pending=pending)
    return Outcome(confirming, _wait(node, confirming), tuple(events))


def _store(state: State, node: DigitsNode, pending: Mapping[str, str]) -> State:
    new_vars = dict(state.vars)
    new_vars[node.store] = pending["value"]
    if node.validate == "province":
        new_vars["province_name_th"] = pending.get("spoken_th", "")
        new_vars["province_name_en"] = pending.get("spoken_en", "")
    return replace(state, node=node.next, phase="ask", tries=0, pending={}, vars=new_vars)


def _on_confirm(
    flow: Flow, node: DigitsNode, state: State, inp: CallerInput, ctx: Context, events: list[FlowEvent]
) -> Outcome:
    assert node.confirm is not None
    key = inp.digits[:1] if inp.kind == "gather" else ""
    if key == node.confirm.confirm_key:
        events.append(FlowEvent(node.id, "confirmed"))
        return _run(flow, _store(state, node, state.pending), ctx, [], events)
    if key == node.confirm.retry_key:
        events.append(FlowEvent(node.id, "enter_again"))
        again = replace(state, phase="ask", tries=0, pending={})
        return Outcome(again, _wait(node, again), tuple(events))
    tries = state.tries + 1
    events.append(FlowEvent(node.id, "confirm_" + ("invalid" if key else "no_input"), {"try": str(tries)}))
    if tries >= node.tries:
        # The value passed validation; keeping it is kinder than starting over or dropping it.
        events.append(FlowEvent(node.id, "confirmed_by_default"))
        return _run(flow, _store(state, node, state.pending), ctx, [], events)
    hint = node.invalid if key else node.no_input
    lead = [say_prompt(hint, state)] if hint else []
    retried = replace(state, tries=tries)
    return Outcome(retried, _confirm_gather(node, retried, lead), tuple(events))


def _on_record(flow: Flow, node: Node, state: State, inp: CallerInput, ctx: Context) -> Outcome:
    assert isinstance(node, RecordNode)
    events: list[FlowEvent] = []
    if state.phase == "confirm":
        key = inp.digits[:1] if inp.kind == "gather" else ""
        if key == node.confirm.confirm_key:
            events.append(FlowEvent(node.id, "send"))
            return _run(flow, replace(state, node=node.next, phase="ask", tries=0), ctx, [], events)
        if key == node.confirm.retry_key and state.rerecords < node.max_rerecords:
            events.append(FlowEvent(node.id, "record_again"))
            again = replace(state, phase="ask", tries=0, rerecords=state.rerecords + 1)
            return Outcome(again, _wait(node, again), tuple(events))
        tries = state.tries + 1
        if tries >= node.tries or key == node.confirm.retry_key:
            # Never lose a message: unanswered confirmation (or no re-records left) sends it.
            events.append(FlowEvent(node.id, "sent_by_default", {"try": str(tries)}))
            return _run(flow, replace(state, node=node.next, phase="ask", tries=0), ctx, [], events)
        events.append(
            FlowEvent(node.id, "confirm_" + ("invalid" if key else "no_input"), {"try": str(tries)})
        )
        hint = node.invalid if key else node.no_input
        lead = [say_prompt(hint, state)] if hint else []
        retried = replace(state, tries=tries)
        return Outcome(retried, _confirm_gather(node, retried, lead), tuple(events))

    rec = inp.recording
    if inp.kind != "record" or rec is None or rec.duration_s == 0:
        if inp.caller_hung_up:
            events.append(FlowEvent(node.id, "caller_hung_up"))
            return Outcome(state, (), tuple(events), ended=True)
        return _retry_or_fail(
            flow, node, state, ctx, "no_input", node.on_fail or Branch(next=node.next), events
        )
    new_vars = dict(state.vars)
    new_vars.update(recording_sid=rec.sid, recording_url=rec.url, recording_duration=str(rec.duration_s))
    events.append(FlowEvent(node.id, "recorded", {"sid": rec.sid, "duration_s": str(rec.duration_s)}))
    recorded = replace(state, vars=new_vars)
    if inp.caller_hung_up:
        # The caller hung up while recording: the message stands as sent.
        events.append(FlowEvent(node.id, "caller_hung_up"))
        return _run(flow, replace(recorded, node=node.next, phase="ask", tries=0), ctx, [], events)
    confirming = replace(recorded, phase="confirm", tries=0)
    return Outcome(confirming, _wait(node, confirming), tuple(events))


def _on_transfer(flow: Flow, node: Node, state: State, inp: CallerInput, ctx: Context) -> Outcome:
    assert isinstance(node, TransferNode)
    events: list[FlowEvent] = []
    status = inp.dial_status or "failed"
    events.append(FlowEvent(node.id, "dial_result", {"status": status}))
    branch = node.answered if inp.kind == "dial" and status == DIAL_ANSWERED else node.unanswered
    said: list[Instruction] = []
    return _run(flow, _take(state, branch, events, said, node), ctx, said, events)


def _on_lookup(flow: Flow, node: Node, state: State, inp: CallerInput, ctx: Context) -> Outcome:
    assert isinstance(node, LookupNode)
    events: list[FlowEvent] = []
    asking = replace(state, phase="ask", pending={})
    if inp.kind != "gather" or not inp.digits:
        return _retry_or_fail(flow, node, asking, ctx, "no_input", node.on_fail, events)
    accepted = case_reference(inp.digits)
    if accepted is None:
        # A wrong check digit: no need to ask the database, and no hint whether such a case exists.
        return _retry_or_fail(flow, node, asking, ctx, "invalid", node.on_fail, events)
    events.append(FlowEvent(node.id, "entered", {"via": "keys"}))
    looking = replace(asking, phase="lookup", pending={"value": accepted.value})
    return Outcome(looking, (), tuple(events), effect="lookup_case")


def _on_lookup_result(
    flow: Flow, node: LookupNode, state: State, ctx: Context, standing: str | None
) -> Outcome:
    events: list[FlowEvent] = []
    reference = state.pending.get("value", "")
    asking = replace(state, phase="ask", pending={})
    if standing is None:
        return _retry_or_fail(flow, node, asking, ctx, "not_found", node.on_fail, events)
    words = node.standing.get(standing)
    if words is None:
        raise EngineError(f"lookup node {node.id!r} has no words for standing {standing!r}")
    found = replace(asking, vars={**asking.vars, FOLLOWUP_VAR: reference})
    events.append(FlowEvent(node.id, "found", {"reference": reference, "standing": standing}))
    said: list[Instruction] = [say_prompt(words, found)]
    return _run(flow, _take(found, node.found, events, said, node), ctx, said, events)


def _on_lookup_locked(flow: Flow, node: LookupNode, state: State, ctx: Context) -> Outcome:
    """No more look-ups from this number for now: a polite word, then on as after the last wrong try."""
    asking = replace(state, phase="ask", pending={})
    events = [FlowEvent(node.id, "tries_locked")]
    said: list[Instruction] = [say_prompt(node.too_many, asking)] if node.too_many else []
    return _run(flow, _take(asking, node.on_fail, events, said, node), ctx, said, events)


_INPUT_HANDLERS = {
    MenuNode: _on_menu,
    DigitsNode: _on_digits,
    RecordNode: _on_record,
    TransferNode: _on_transfer,
    LookupNode: _on_lookup,
}
