"""Command-line options generated from the pydantic config models, so a model is the one source of its CLI.

A command names the model it runs (`config_command(FinetuneConfig)`) and receives the loaded config; every
field of the model becomes an option at import time: `--field-name` (`--x/--no-x` for booleans), its
`description` as help, its default shown once from the model, `Literal` values as choices, list fields
as repeatable options. Renaming, adding or moving a field (into a mixin the model inherits from) changes
the CLI with no edit. Generated options default to None, "not given", so the loader keeps the precedence
defaults < YAML file (`--config`) < command line (`load_serve_settings` puts `TDRO_*` variables between).

What the model cannot say lives in `Opt`: short and extra names, a positional argument, comma-separated
lists, a deprecated old name. `SHARED` holds what every command agrees on (`-m` for a model, `-o` for an
output, help for `--device` where a model has none), so it is written once. A pydantic-settings model
(`ServeSettings`) also shows each option's environment variable. Fields a command line cannot carry
(secrets, mappings) are left to the YAML file. This module imports no torch: `--help` stays fast.
"""

from __future__ import annotations

import functools
import inspect
import re
import types
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin

import typer
from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from tdro_suite.config import load_config

M = TypeVar("M", bound=BaseModel)
R = TypeVar("R")

SCALARS = (bool, int, float, str, Path)


@dataclass(frozen=True)
class Opt:
    """How one field appears on the command line beyond what its model says.

    `names` adds names to the generated `--field-name` ("-m", "--lr"; for a flag "--cache/--no-cache",
    or "--resume/--restart" for an extra off-switch); `deprecated` adds hidden old names that still work
    with a warning (only where a shipped file uses them); `argument` makes the field positional; `split`
    lets a list field also take "a,b" in one value; `help` is used only where the field has no description.
    """

    names: tuple[str, ...] = ()
    deprecated: tuple[str, ...] = ()
    argument: bool = False
    split: str | None = None
    help: str | None = None

    def merged(self, other: Opt | None) -> Opt:
        """`other` (a command's own) on top of `self` (the shared one): names add up, set values win."""
        if other is None:
            return self
        mine = {f.name: getattr(other, f.name) or getattr(self, f.name) for f in fields(Opt)}
        mine["names"] = self.names + tuple(n for n in other.names if n not in self.names)
        return Opt(**mine)


# Names and help every command agrees on, applied wherever a model has the field (a description wins).
SHARED: dict[str, Opt] = {
    "model": Opt(("-m",), help="Model folder, bundled alias (minilm, smollm2-135m) or hub id."),
    "output": Opt(("-o",)),
    "output_dir": Opt(("-o",), help="Run folder."),
    "learning_rate": Opt(("--lr",)),
    "device": Opt(help="torch device (cpu, cuda, cuda:1, ...); default: cuda if available, else mps, else cpu."),
    "max_length": Opt(help="Tokens per text; default: the model's limit."),
    "batch_size": Opt(help="Texts per forward pass."),
    "index_type": Opt(help="flat | hnsw | ivf-flat | ivf-pq | sq8, or a FAISS factory string."),
}

CONFIG_OPTION: Any = typer.Option(
    None, "--config", "-c", show_default=False,
    help="YAML file with any of the options below (as snake_case keys); options given here override it.",
)
JSON_OPTION: Any = typer.Option(False, "--json", help="Print JSON on stdout instead of a table.")
DRY_RUN_OPTION: Any = typer.Option(
    False, "--dry-run",
    help="Check the config, data, models and launch layout and print the plan (batch, steps, precision, "
    "mixture); train nothing, load no weights. Exits non-zero when the run would fail.",
)


def show_plan(plan: Any) -> None:
    """Print a dry run's plan (`tdro_suite.runtime.plan.Plan`); exit 1 when the run would fail."""
    from rich.console import Console

    plan.render(Console())
    if not plan.ok:
        raise typer.Exit(1)


@dataclass(frozen=True)
class _Field:
    """One generated parameter: the field it fills and how its raw CLI value becomes an override."""

    name: str
    parameter: inspect.Parameter
    split: str | None = None
    list_field: bool = False
    deprecated: tuple[inspect.Parameter, ...] = ()

    def take(self, kwargs: dict[str, Any]) -> Any:
        """Pop this field's value (its current name winning over a deprecated one) as a `load_config` override."""
        raw = kwargs.pop(self.name, None)
        for old in self.deprecated:
            value = kwargs.pop(old.name, None)
            if value is not None:
                new = self.parameter.default.param_decls[0]
                typer.echo(f"warning: {old.default.param_decls[0]} is deprecated, use {new}.", err=True)
                raw = value if raw is None else raw
        return self.value(raw)

    def value(self, raw: Any) -> Any:
        """None when not given; list values split on `split`."""
        if raw is None or not self.list_field:
            return raw
        items = list(raw)
        if self.split:
            items = [part.strip() for item in items for part in str(item).split(self.split) if part.strip()]
        return items or None


def _without_none(annotation: Any) -> Any:
    """`X | None` → X; a union of several types stays a union (handled as text)."""
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        return args[0] if len(args) == 1 else Union[tuple(args)]  # noqa: UP007 - built from a tuple
    return annotation


def _scalar(annotation: Any) -> Any | None:
    """The CLI type of a single value: bool/int/float/str/Path or a Literal; None if it has no CLI form."""
    annotation = _without_none(annotation)
    if get_origin(annotation) is Annotated:  # PositiveInt and friends
        annotation = get_args(annotation)[0]
    if annotation in SCALARS or get_origin(annotation) is Literal:
        return annotation
    if get_origin(annotation) in (Union, types.UnionType):
        members = [_scalar(a) for a in get_args(annotation)]
        return str if all(m in (int, float, str) for m in members) else None
    return None


def cli_type(annotation: Any) -> tuple[Any, bool] | None:
    """(type for typer, is a list) of a field annotation; None for what a command line cannot carry."""
    annotation = _without_none(annotation)
    if get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    if get_origin(annotation) in (list, tuple, set, frozenset):
        args = [a for a in get_args(annotation) if a is not Ellipsis]
        item = _scalar(args[0]) if len(args) == 1 else None
        return (list[item], True) if item is not None and item is not bool else None  # type: ignore[valid-type]
    item = _scalar(annotation)
    return (item, False) if item is not None else None


def option_name(name: str) -> str:
    """`per_device_batch_size` → `--per-device-batch-size`."""
    return "--" + name.replace("_", "-")


def env_name(model: type[BaseModel], name: str) -> str | None:
    """The environment variable a pydantic-settings model reads for `name` (None for a plain model)."""
    prefix = model.model_config.get("env_prefix")
    return f"{prefix}{name}".upper() if prefix is not None else None


def _flag_decls(name: str, extra: Iterable[str]) -> list[str]:
    """`--x/--no-x` plus extra on/off names, each name once ("--resume/--restart" adds only --restart)."""
    on, off = [option_name(name)], ["--no-" + option_name(name)[2:]]
    for decl in extra:
        first, _, second = decl.partition("/")
        for names, new in ((on, first.strip()), (off, second.strip())):
            if new and new not in on + off:
                names.append(new)
    # click reads "--a/--b" as on/off, "--a/" as on only and " /--b" as off only
    return [
        f"{on[i] if i < len(on) else ' '}/{off[i] if i < len(off) else ''}" for i in range(max(len(on), len(off)))
    ]


def _shown_default(info: Any, decls: list[str], is_flag: bool) -> str | None:
    """The model's default as text ("32", "no-lora", "beir, miracl"); None when there is none."""
    if info.default_factory is not None:
        if getattr(info, "default_factory_takes_data", False):
            return None
        value = info.default_factory()
    else:
        value = info.default
    if value is PydanticUndefined or value is None or value == []:
        return None
    if is_flag:
        on, _, off = decls[0].partition("/")
        return (on if value else off).strip().lstrip("-")
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value)
    return str(value)


def _help(model: type[BaseModel], name: str, info: Any, opt: Opt, default: str | None) -> str | None:
    """The field's description (else the fallback), its environment variable and default, as rich markup."""
    parts = [info.description or opt.help or ""]
    if opt.split and "separated" not in parts[0]:
        parts.append(f"[{'comma' if opt.split == ',' else repr(opt.split)}-separated or repeated]")
    env = env_name(model, name)
    if env:
        parts.append(f"[env: {env}]")
    if default is not None:
        parts.append(f"[default: {default}]")
    elif info.is_required():
        parts.append("[required here or in --config]")
    text = " ".join(p for p in parts if p)
    return text.replace("[", "\\[") or None  # "jsonl[.gz]" and "[default: 1]" are text, not rich styles


def _declaring_classes(model: type[BaseModel]) -> dict[str, type]:
    """Each field's home: the base-most class of `model` that declares it (a mixin such as ModelConfig)."""
    homes: dict[str, type] = {}
    for cls in model.__mro__:
        if isinstance(cls, type) and issubclass(cls, BaseModel):
            homes.update({name: cls for name in inspect.get_annotations(cls) if name in model.model_fields})
    return homes


def panel(cls: type) -> str:
    """A help panel's title from a mixin's name: `SearchKnobsConfig` → "Search knobs"."""
    words = re.findall(r"[A-Z][a-z0-9]*", cls.__name__.removesuffix("Config")) or [cls.__name__]
    return " ".join([words[0], *(w.lower() for w in words[1:])])


def field_order(model: type[BaseModel]) -> list[str]:
    """Field names grouped by home, the model's own first, then each mixin's, in the MRO's order.

    pydantic lists inherited fields first (the last mixin's first); a reader of `--help` wants the
    command's own options first and each mixin's (model, data, optimisation, run folder) together.
    """
    homes = _declaring_classes(model)
    mro = list(model.__mro__)
    names = list(model.model_fields)
    return sorted(names, key=lambda n: (mro.index(homes.get(n, model)), names.index(n)))


def model_fields(
    model: type[BaseModel], options: Mapping[str, Opt] | None = None, exclude: Iterable[str] = ()
) -> list[_Field]:
    """One parameter per field of `model` that a command line can carry, in the model's order.

    Names in `options` or `exclude` that the model lacks are ignored, so a command keeps working while
    fields are renamed (an alias for a field's new name starts to apply when the field appears).
    """
    options = options or {}
    skipped = set(exclude)
    homes = _declaring_classes(model)
    out = []
    for name in field_order(model):
        info = model.model_fields[name]
        kind = cli_type(info.annotation)
        if name in skipped or kind is None:
            continue
        annotation, is_list = kind
        opt = SHARED.get(name, Opt()).merged(options.get(name))
        if opt.split and is_list:
            annotation = list[str]
        is_flag = annotation is bool and not opt.argument
        decls = _flag_decls(name, opt.names) if is_flag else [option_name(name), *opt.names]
        help_text = _help(model, name, info, opt, _shown_default(info, decls, is_flag))
        if opt.argument:
            default: Any = typer.Argument(None, help=help_text, show_default=False)
        else:
            home = homes.get(name, model)
            default = typer.Option(
                None, *decls, help=help_text, show_default=False,
                rich_help_panel=None if home is model else panel(home),
            )
        parameter = inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)
        old = tuple(
            inspect.Parameter(
                f"{name}_deprecated_{i}", inspect.Parameter.KEYWORD_ONLY, annotation=annotation,
                default=typer.Option(None, decl, hidden=True),
            )
            for i, decl in enumerate(opt.deprecated)
        )
        out.append(_Field(name, parameter, split=opt.split, list_field=is_list, deprecated=old))
    return out


def config_command(
    model: type[M],
    *,
    loader: Callable[[Path | None, dict[str, Any]], M] | None = None,
    options: Mapping[str, Opt] | None = None,
    exclude: Iterable[str] = (),
) -> Callable[[Callable[..., R]], Callable[..., R]]:
    """Decorate `def command(cfg: Model, <own typer parameters>)`: the CLI gets `--config` and the model's fields.

    The wrapper collects the generated options (None = not given), builds the config with
    `loader(config_path, overrides)` (default: `load_config(model, ...)`) and calls the command with it.
    The command's own parameters (positional data, `--json`) follow the generated ones.
    """
    load: Callable[[Path | None, dict[str, Any]], M] = loader or functools.partial(load_config, model)
    generated = model_fields(model, options, exclude)

    def decorate(func: Callable[..., R]) -> Callable[..., R]:
        own = []  # the command's own parameters; the first, the config, is filled by the wrapper
        for param in list(inspect.signature(func).parameters.values())[1:]:
            if isinstance(param.annotation, str):  # postponed annotations: typer needs the type itself
                param = param.replace(annotation=eval(param.annotation, func.__globals__))
            own.append(param)
        taken = {p.name for f in generated for p in (f.parameter, *f.deprecated)} | {"config"}
        clash = taken & {p.name for p in own}
        if clash:
            raise TypeError(f"{func.__name__}: parameters {sorted(clash)} are also generated from {model.__name__}")
        arguments = [f.parameter for f in generated if isinstance(f.parameter.default, typer.models.ArgumentInfo)]
        flags = [p for f in generated for p in (f.parameter, *f.deprecated) if p not in arguments]
        config = inspect.Parameter("config", inspect.Parameter.KEYWORD_ONLY, default=CONFIG_OPTION, annotation=Path)
        rest = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own]
        parameters = [*arguments, config, *flags, *rest]

        @functools.wraps(func)
        def command(**kwargs: Any) -> R:
            path = kwargs.pop("config", None)
            overrides = {f.name: f.take(kwargs) for f in generated}
            return func(load(path, overrides), **kwargs)

        command.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in parameters}
        return command

    return decorate
