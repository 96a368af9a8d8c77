"""The executive-memory protocol: a frozen executive answers by asking the memory atomic questions.

    from memo_pipelines.protocol import Protocol, ProtocolConfig
    answer = Protocol(executive, memory, ProtocolConfig(paraphrases=3), sources=SourceIndex(rows)).ask("...")
    answer.answer, answer.sources, answer.trace
"""

from .calls import parse_json_reply
from .sources import SourceIndex
from .stages import MODES, Answer, Protocol, ProtocolConfig, Turn, is_idk

__all__ = ["MODES", "Answer", "Protocol", "ProtocolConfig", "SourceIndex", "Turn", "is_idk", "parse_json_reply"]
