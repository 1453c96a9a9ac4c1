"""What every command shares: the error policy, ``--set``, and output-dir defaults.

Exit codes: 0 success; 2 bad usage or bad input (one line on stderr: the problem and the fix);
1 any other failure (a bug: the traceback is shown).
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from ssl_vit.errors import SslvitError

SET_HELP = ("Override a config key: --set section.key=value (repeatable), e.g. --set train.max_steps=100 "
            "--set model.patch_embed.frozen=false. Unknown keys list the valid ones.")


def set_option(f):
    return click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help=SET_HELP)(f)


class SslvitGroup(click.Group):
    """Turns SslvitError into `error: <line>` + exit 2, anywhere below it."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except SslvitError as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(2)
        except click.exceptions.Exit:
            raise
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)


def default_output_dir(kind: str) -> Path:
    return Path("runs") / f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}"
