"""`sslvit export CKPT --to timm OUT.safetensors`: a checkpoint timm loads without sslvit."""

from __future__ import annotations

import click

from ssl_vit.checkpoints.export import export_timm
from ssl_vit.cli.common import Reads, overwrite_option, set_option

#: `sslvit export` reads the backbone's model.* (--set model.num_heads=6 for a file without metadata); a --set of
#: any other key is refused (it would have no effect).
READS = Reads("export", ("model",))


@click.command("export")
@click.argument("checkpoint")
@click.option("--to", "target", type=click.Choice(["timm"]), default="timm", show_default=True, help="Target library.")
@click.argument("out")
@overwrite_option("OUT.safetensors and OUT.json")
@set_option
def export_cmd(checkpoint, target, out, overwrite, overrides):
    """Export CHECKPOINT (any format sslvit loads) as OUT.safetensors with timm key names, plus OUT.json
    naming the timm model and its kwargs.

    \b
    Load it with timm alone:
      spec = json.load(open("OUT.json"))
      timm.create_model(spec["model_name"], pretrained=True, num_classes=0,
                        pretrained_cfg_overlay={"file": "OUT.safetensors"}, **spec["model_kwargs"])
    Exportable: plain patchify ViTs (vit_* with model.stem=patchify). Other stems and non-ViT backbones
    have no timm equivalent and are refused.

    \b
    Example:
      sslvit export runs/demo --to timm vit_micro_fmnist.safetensors
    """

    READS.check_sets(overrides)
    res = export_timm(checkpoint, out, overrides, overwrite)
    for note in res["notes"]:
        click.echo(f"note: {note}", err=True)
    click.echo(f"timm model: {res['model_name']} {res['model_kwargs']}")
    click.echo(f"json: {res['json']}")
    click.echo(f"exported: {res['safetensors']}")
