"""Resource fields generated from the library's config dataclasses (TrainConfig, UpdateConfig, MergeConfig, Gates,
SynthesisConfig, ProbeConfig...): a setting is declared once, in its dataclass, with its default and its comment, and
the launchpad shows it with both. A knob added to a dataclass appears in its resource without another line here."""

import dataclasses
import inspect
import io
import textwrap
import tokenize
import typing
from typing import NamedTuple

import dagster as dg
from pydantic import Field


class Part(NamedTuple):
    """A config dataclass whose fields a resource carries, each named prefix + field name, less those excluded; `defaults`
    replaces a dataclass default where this resource's role needs another."""

    config: type
    prefix: str = ""
    exclude: tuple[str, ...] = ()
    defaults: dict | None = None


def field_comments(config: type) -> dict[str, str]:
    """Each field's comment: the one on its line, else the block of comment lines right above it."""
    source = textwrap.dedent(inspect.getsource(config))
    comments, block, names_by_line = {}, [], {}
    for field in dataclasses.fields(config):
        for number, line in enumerate(source.splitlines(), start=1):
            if line.strip().startswith(f"{field.name}:"):
                names_by_line[number] = field.name
                break
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            text = token.string.lstrip("#").strip()
            if token.start[0] in names_by_line:
                comments[names_by_line[token.start[0]]] = text
            else:
                block.append(text)
        elif token.type == tokenize.NAME and token.start[0] in names_by_line and token.start[1] == token.line.index(token.string):
            if block:
                comments.setdefault(names_by_line[token.start[0]], " ".join(block))
            block = []
        elif token.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.COMMENT):
            block = []
    return comments


def config_type(annotation):
    """Dagster config has lists, not tuples."""
    if typing.get_origin(annotation) is tuple:
        return list[typing.get_args(annotation)[0]]
    return annotation


def settings_resource(name: str, *parts: Part) -> type[dg.ConfigurableResource]:
    """A ConfigurableResource base class with one field per dataclass field of `parts`, defaults and descriptions included."""
    annotations, namespace = {}, {}
    for part in parts:
        hints, comments = typing.get_type_hints(part.config), field_comments(part.config)
        for field in dataclasses.fields(part.config):
            if field.name in part.exclude:
                continue
            key = part.prefix + field.name
            if key in annotations:
                raise ValueError(f"{name}: {key} is declared by two config classes")
            default = field.default if field.default is not dataclasses.MISSING else field.default_factory()
            default = (part.defaults or {}).get(field.name, default)
            annotations[key] = config_type(hints[field.name])
            namespace[key] = Field(default=list(default) if isinstance(default, tuple) else default,
                                   description=comments.get(field.name, f"{part.config.__name__}.{field.name}"))
    return type(name, (dg.ConfigurableResource,), {"__annotations__": annotations, "__module__": __name__, **namespace})


def build_config(part: Part, resource, **values):
    """The dataclass of `part` from a resource's fields (values given here win)."""
    hints = typing.get_type_hints(part.config)
    for field in dataclasses.fields(part.config):
        if field.name not in part.exclude and field.name not in values:
            value = getattr(resource, part.prefix + field.name)
            values[field.name] = tuple(value) if typing.get_origin(hints[field.name]) is tuple else value
    return part.config(**values)
