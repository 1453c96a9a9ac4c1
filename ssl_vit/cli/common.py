"""What every command shares: the error policy, ``--set``, and output-dir defaults.

Exit codes: 0 success; 2 bad usage or bad input (one line on stderr: the problem and the fix);
1 any other failure (a bug: the traceback is shown).
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, List, Optional, Tuple

import click

from ssl_vit.config import load_config
from ssl_vit.config.loading import coerce, parse_set, setting_type, valid_keys
from ssl_vit.engine.trainer import Preempted
from ssl_vit.errors import SslvitError

SET_HELP = (
    "Override a config key: --set section.key=value (repeatable), e.g. --set train.max_steps=100 "
    "--set model.patch_embed.frozen=false. Unknown keys list the valid ones."
)


def set_option(f):
    return click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help=SET_HELP)(f)


@dataclass(frozen=True)
class Reads:
    """The config a command reads, declared next to it: sections (``eval``) and single keys (``train.device``).
    A ``--set`` of any other key would have no effect, so :meth:`check` refuses it in one line that names
    what the command reads."""

    command: str
    keys: Tuple[str, ...]

    def covers(self, key: str) -> bool:
        return any(key == r or key.startswith(r + ".") for r in self.keys)

    def describe(self) -> str:
        """'model.*, data.{data_dir,download}, log.progress' (sections with .*, single keys by section)."""
        leaves, groups = set(valid_keys()), {}
        for r in self.keys:
            section, _, rest = r.partition(".")
            groups.setdefault(section, []).append(rest if r in leaves else "*")
        return ", ".join(
            k if v == [""] else f"{k}.{v[0]}" if len(v) == 1 else f"{k}.{{{','.join(v)}}}" for k, v in groups.items()
        )

    def check(self, keys: Iterable[str], how: str = "--set") -> None:
        """Refuse a key this command does not read (unknown keys are left to the config loader's 'did you
        mean')."""
        leaves = set(valid_keys())
        for key in keys:
            if key in leaves and not self.covers(key):
                raise SslvitError(
                    f"sslvit {self.command} does not read {key} ({how} {key}=... would have no "
                    f"effect); it reads {self.describe()}; drop {how} {key}"
                )

    def check_sets(self, overrides: Iterable[str]) -> None:
        self.check(parse_set(o)[0] for o in overrides)


def alias_flags(overrides: Iterable[str], *aliases: Tuple[str, str, Optional[Any]]) -> List[str]:
    """A flag that repeats a config key is an alias of it (``--k 5`` is ``--set eval.knn_k=5``): each
    ``(flag, key, value)`` whose value was given (not None) becomes that ``--set``, after the overrides. The
    key also given by ``--set`` with another value is a one-line error naming both."""
    overrides = list(overrides)
    out = list(overrides)
    for flag, key, value in aliases:
        if value is None:
            continue
        t = setting_type(key)
        for item in overrides:
            k, v = parse_set(item)
            if k == key and coerce(v, t, key) != coerce(value, t, key):
                raise SslvitError(
                    f"{flag} {value} and --set {item} disagree ({flag} is an alias of {key}); give "
                    f"the value once: {flag} {value} or --set {item}"
                )
        out.append(f"{key}={json.dumps(value)}")
    return out


def overwrite_option(what: str):
    """``--overwrite``: without it a command refuses to replace a file it would write (``what``)."""
    return click.option("--overwrite", is_flag=True, help=f"Replace existing {what} (refused without it).")


def checkpoint_option(f):
    """``--checkpoint``: any backbone the one loader (``ssl_vit.checkpoints.load``) reads."""
    return click.option(
        "--checkpoint",
        required=True,
        help="Run dir, last.pt, a .safetensors backbone, an official MoCo v3 .pth.tar, a DeiT or timm ViT file.",
    )(f)


def training_options(kind: str):
    """The options `pretrain` and `train` share: --recipe, --output-dir, --set, --resume, --force, --overwrite."""

    def deco(f):
        for opt in reversed(
            [
                click.option(
                    "--recipe",
                    help="Recipe name (recipes/<name>.yaml) or path to a YAML file. With --resume "
                    "and no recipe, the run dir's config.yaml is used.",
                ),
                click.option(
                    "--output-dir",
                    type=click.Path(file_okay=False),
                    help=f"Run directory (default: runs/{kind}-<time>).",
                ),
                set_option,
                click.option(
                    "--resume",
                    is_flag=True,
                    help="Continue from <output-dir>/checkpoints/last.pt (starts fresh if none).",
                ),
                click.option("--force", is_flag=True, help="With --resume: accept a changed model/method/data config."),
                click.option(
                    "--overwrite",
                    is_flag=True,
                    help="Start over in an output dir that holds a run: deletes that run's files (config.yaml, "
                    "metrics.jsonl, results.*, report.md, diag_*.png, checkpoints/, tensorboard/; each "
                    "named in one log line; other files are kept). Without it (or --resume) such a dir "
                    "is refused.",
                ),
            ]
        ):
            f = opt(f)
        return f

    return deco


def one_line(text: str) -> str:
    """A message as the single stderr line the exit-code contract promises (newlines and runs of spaces folded)."""
    return " ".join(str(text).split())


class SslvitGroup(click.Group):
    """Turns SslvitError into `error: <line>` + exit 2, anywhere below it; click's own usage errors (missing or
    bad options, unknown commands) become the same one line instead of click's usage block."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, False, **extra)
        except click.UsageError as e:
            if type(e).__name__ == "NoArgsIsHelpError":  # bare `sslvit` / `sslvit data`: the help is the answer
                click.echo(e.ctx.get_help())
                sys.exit(0)
            where = e.ctx.command_path if e.ctx is not None else (prog_name or "sslvit")
            click.echo(f"error: {one_line(e.format_message()).rstrip('.')}; see '{where} --help'", err=True)
            sys.exit(2)
        except click.ClickException as e:
            click.echo(f"error: {one_line(e.format_message())}", err=True)
            sys.exit(e.exit_code)
        except click.Abort:
            click.echo("aborted", err=True)
            sys.exit(1)
        sys.exit(rv if isinstance(rv, int) else 0)  # an int is click's exit code (--help, --version: 0)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except SslvitError as e:
            click.echo(f"error: {one_line(e)}", err=True)
            sys.exit(e.exit_code)  # 2; 1 for RunStopped (a run that stopped itself, e.g. on an alarm)
        except click.exceptions.Exit:
            raise
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)


def default_output_dir(kind: str) -> Path:
    return Path("runs") / f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}"


def run_config(reads: Reads, recipe, output_dir, overrides, resume: bool, force: bool, overwrite: bool = False):
    """A training command's arguments -> (Config, output dir). With ``--resume`` and no recipe, the run dir's
    config.yaml is the recipe. Bad combinations and a ``--set`` of a key the command does not read (``reads``)
    are one-line errors."""

    if force and not resume:
        raise SslvitError("--force only applies with --resume; drop --force or add --resume")
    if resume and overwrite:
        raise SslvitError("--resume continues the run in the output dir and --overwrite deletes it; pass only one")
    if resume and not output_dir:
        raise SslvitError("--resume needs --output-dir pointing at the run to continue")
    if not recipe and not (resume and output_dir and (Path(output_dir) / "config.yaml").is_file()):
        raise SslvitError("no recipe given; pass --recipe NAME (e.g. --recipe smoke) or --resume an existing run")
    recipe = recipe or str(Path(output_dir) / "config.yaml")
    reads.check_sets(overrides)
    cfg = load_config(recipe, overrides)
    return cfg, (Path(output_dir) if output_dir else default_output_dir(reads.command))


def run_training(fn, cfg, out, resume: bool, force: bool, overwrite: bool = False):
    """Run ``pretrain`` / ``train_supervised``; on a preemption signal print how to resume and exit 128+sig.
    Prints where the run lives and returns its summary (None on ranks other than 0 under torchrun)."""

    try:
        summary = fn(cfg, out, resume=resume, force=force, log=lambda m: click.echo(m, err=True), overwrite=overwrite)
    except Preempted as e:
        click.echo(str(e), err=True)
        sys.exit(128 + e.signum)
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun only rank 0 reports
        return None
    click.echo(f"run dir:     {summary['output_dir']}")
    click.echo(f"checkpoint:  {summary['checkpoint']}")
    click.echo(f"TensorBoard: tensorboard --logdir {summary['tensorboard']}")
    return summary
