"""Calls to the executive and the memory with a timeout each, under one deadline per question, and JSON repair."""

import ast
import json
import re
import threading
import time


class CallTimeout(TimeoutError):
    pass


class Deadline:
    def __init__(self, seconds: float):
        self.ends = time.monotonic() + seconds

    def remaining(self) -> float:
        return self.ends - time.monotonic()

    def passed(self) -> bool:
        return self.remaining() <= 0


def call_with_timeout(fn, timeout_s: float):
    """fn() in a daemon thread; raise CallTimeout after timeout_s. A timed-out call is abandoned, never joined."""
    if timeout_s <= 0:
        raise CallTimeout("no time left before the deadline")
    outcome: dict = {}

    def run():
        try:
            outcome["value"] = fn()
        except BaseException as error:  # re-raised in the caller's thread
            outcome["error"] = error

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(timeout_s)
    if worker.is_alive():
        raise CallTimeout(f"no reply within {timeout_s:.1f} s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def _json_span(text: str) -> str:
    """The bracketed value opening at text[0], honouring strings; a value cut off by the token limit is closed."""
    closing, stack, in_string, escaped = {"{": "}", "[": "]"}, [], False, False
    for index, char in enumerate(text):
        if in_string:
            escaped = not escaped and char == "\\"
            in_string = escaped or char != '"'
        elif char == '"':
            in_string = True
        elif char in closing:
            stack.append(closing[char])
        elif stack and char == stack[-1]:
            stack.pop()
            if not stack:
                return text[: index + 1]
    return text.rstrip().rstrip(",") + ('"' if in_string else "") + "".join(reversed(stack))


def _repairs(candidate: str):
    yield candidate
    no_trailing = re.sub(r",\s*([}\]])", r"\1", candidate)
    yield no_trailing
    yield re.sub(r"(?<=[{,])\s*([A-Za-z_][A-Za-z0-9_]*)\s*:", r'"\1":', no_trailing)  # unquoted keys


def parse_json_reply(reply: str | None, expect: type):
    """The first JSON value of type `expect` in an executive's reply, repaired where it can be; None if there is none.

    Tolerates code fences, prose around the JSON, trailing commas, unquoted keys and Python literals (single quotes,
    None/True/False). An unclosed value at the end of a reply cut by the token limit is closed before parsing.
    """
    if not reply:
        return None
    text = re.sub(r"```(?:json)?", "", reply)
    opener = "{" if expect is dict else "["
    for match in re.finditer(re.escape(opener), text):
        span = _json_span(text[match.start() :])
        for candidate in _repairs(span):
            try:
                value = json.loads(candidate)
            except json.JSONDecodeError:
                try:
                    value = ast.literal_eval(candidate)
                except (ValueError, SyntaxError, MemoryError, RecursionError):
                    continue
            if isinstance(value, expect):
                return value
    return None
