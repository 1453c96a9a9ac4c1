"""Bad input, table-driven (issue 25): every case exits 2 with ONE line on stderr that names the cause, no
traceback, and every file that existed before the command is byte-identical afterwards.

Families: data loss (claimed run dirs, files that are never replaced without --overwrite), meaningless
settings (non-finite or out-of-range floats, broken backbone metadata, NaN weights), recipes (duplicate keys,
not a mapping, not UTF-8), dataset-spec options, checkpoints that are not what they claim, click's own usage
errors. Add a row for every new way in. Most rows run in-process (click's CliRunner); rows marked
``proc`` run a real ``python -m ssl_vit`` so that warnings printed by libraries are seen too.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import pickle
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional

import pytest
import torch
from click.testing import CliRunner
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from ssl_vit.cli import cli
from ssl_vit.core.rundir import LOCK_NAME

ROOT = Path(__file__).resolve().parents[2]


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


@dataclass
class Fx:
    """The shared, read-only fixtures (built once) and the case's own folder (copies it may touch)."""

    root: Path
    data: str
    case: Path = None

    def __getattr__(self, name):  # fx.std0 -> root/std0.safetensors etc.
        for suffix in (".safetensors", ".pt", ".yaml", ""):
            p = self.root / f"{name}{suffix}"
            if p.exists():
                return str(p)
        raise AttributeError(name)

    def run_copy(self, name="run", legacy=False) -> str:
        dst = self.case / name
        shutil.copytree(self.root / "run", dst)
        if legacy:  # a run dir written before run.lock existed
            (dst / LOCK_NAME).unlink()
        return str(dst)


def _smoke_sets(data: str, extra=()) -> List[str]:
    sets = [
        f"data.dataset={data}",
        "train.max_steps=2",
        "train.batch_size=32",
        "train.checkpoint_every=1",
        "log.progress=false",
        "eval.max_train=256",
        "eval.max_test=64",
        "log.knn_every=0",
        *extra,
    ]
    return [a for s in sets for a in ("--set", s)]


@pytest.fixture(scope="module")
def fx(tmp_path_factory, fmnist_dir) -> Fx:
    from ssl_vit.config import load_config
    from ssl_vit.runs import pretrain

    root = tmp_path_factory.mktemp("bad_inputs")
    data = f"fmnist:{fmnist_dir}"
    sets = _smoke_sets(data)[1::2]
    pretrain(load_config("smoke", sets), root / "run", log=lambda m: None)
    st = root / "run" / "checkpoints" / "last.safetensors"
    tensors = load_file(str(st))
    with safe_open(str(st), "pt") as f:
        meta = f.metadata()
    mc, dc = json.loads(meta["model_config"]), json.loads(meta["data_config"])

    def with_meta(name, **changes):
        md = {k: v for k, v in {**meta, **changes}.items() if v is not None}
        save_file(tensors, str(root / f"{name}.safetensors"), metadata=md)

    with_meta("badjson", model_config="{not json")
    with_meta("nomodel", model_config=None)
    with_meta("mclist", model_config=json.dumps([1, 2]))
    with_meta("mcunknown", model_config=json.dumps({**mc, "widht": 3}))
    with_meta("imgsize0", model_config=json.dumps({**mc, "img_size": 0}))
    with_meta("patch5", model_config=json.dumps({**mc, "patch_size": 5}))
    with_meta("heads0", model_config=json.dumps({**mc, "num_heads": 3}))
    with_meta("nodata", data_config=None)
    with_meta("std0", data_config=json.dumps({**dc, "std": [0.0]}))
    with_meta("stdneg", data_config=json.dumps({**dc, "std": [-0.3]}))
    with_meta("stdstr", data_config=json.dumps({**dc, "std": "abc"}))
    with_meta("meannan", data_config=json.dumps({**dc, "mean": [float("nan")]}))
    with_meta("imgneg", data_config=json.dumps({**dc, "img_size": -3}))
    with_meta("chans2", data_config=json.dumps({**dc, "in_chans": 2}))
    nan = {k: v.clone() for k, v in tensors.items()}
    nan["blocks.0.attn.qkv.weight"][0, 0] = float("nan")
    save_file(nan, str(root / "nan.safetensors"), metadata=meta)
    state = torch.load(root / "run" / "checkpoints" / "last.pt", weights_only=True)
    torch.save({k: v for k, v in state.items() if k != "config"}, root / "noconfig.pt")
    torch.save({**state, "config": [1, 2]}, root / "configlist.pt")
    torch.save({k: v for k, v in state.items() if k != "data_config"}, root / "nodatacfg.pt")
    (root / "randpt.pt").write_bytes(bytes(range(256)) * 16)
    (root / "empty.pt").write_bytes(b"")
    torch.save(tensors, root / "zip_as.safetensors")
    (root / "randst.safetensors").write_bytes(bytes(range(255, -1, -1)) * 16)
    torch.save({"x": _RunsCode()}, root / "code_zip.pt")
    torch.save({"x": _RunsCode()}, root / "code_legacy.pt", _use_new_zipfile_serialization=False)
    (root / "code_raw.pt").write_bytes(pickle.dumps(_RunsCode(), protocol=4))
    shutil.copy(root / "code_zip.pt", root / "code_renamed.safetensors")
    smoke = (ROOT / "recipes" / "smoke.yaml").read_text()
    (root / "list.yaml").write_text("- a\n- b\n")
    (root / "string.yaml").write_text("just a string\n")
    (root / "latin1.yaml").write_bytes("seed: 0\n# caf\xe9\n".encode("latin-1"))
    (root / "dup_section.yaml").write_text(smoke + "train:\n  max_steps: 2\n")
    (root / "dup_key.yaml").write_text("seed: 0\nmodel:\n  img_size: 28\n  img_size: 32\n")
    (root / "lr_inf.yaml").write_text(smoke.replace("lr: 1.5e-3", "lr: .inf"))
    return Fx(root, data)


def _cfg_list(fx):
    run = fx.run_copy()
    Path(run, "config.yaml").write_text("- 1\n- 2\n")
    return run


def _all_corrupt(fx):
    run = fx.run_copy()
    for p in Path(run, "checkpoints").glob("*.pt"):
        p.write_bytes(b"\x00" * 64)
    return run


def _lock(fx):
    """A run dir whose lock another holder has (this test process, through its own open file)."""
    run = fx.run_copy()
    f = open(Path(run) / LOCK_NAME, "r+")
    fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    f.seek(0)
    f.truncate()
    f.write(json.dumps({"pid": os.getpid(), "task": "pretrain"}))
    f.flush()
    fx.holder = f
    return run


def _existing(*names):
    def setup(fx):
        for n in names:
            (fx.case / n).parent.mkdir(parents=True, exist_ok=True)
            (fx.case / n).write_text("precious\n")
        return str(fx.case)

    return setup


@dataclass
class Case:
    id: str
    args: Callable[[Fx, Optional[str]], List[str]]  # (fixtures, what setup returned) -> argv
    needle: str  # in the one stderr line
    setup: Optional[Callable[[Fx], str]] = None
    proc: bool = False  # run a real process


def knn(ckpt_attr, *extra, dataset=None):
    return lambda fx, _: [
        "knn",
        "--checkpoint",
        getattr(fx, ckpt_attr),
        "--dataset",
        dataset or fx.data,
        "--output-dir",
        str(fx.case / "k"),
        *extra,
    ]


def pretrain_set(*kv, cmd="pretrain"):
    return lambda fx, _: [cmd, "--recipe", "smoke", "--output-dir", str(fx.case / "o"), *_smoke_sets(fx.data, kv)]


CASES = [
    # ---- data loss: claimed run dirs, files replaced only with --overwrite --------------------------------------
    Case(
        "pretrain-into-finished-run",
        lambda fx, run: ["pretrain", "--recipe", "smoke", "--output-dir", run, *_smoke_sets(fx.data)],
        "already holds a run",
        lambda fx: fx.run_copy(),
    ),
    Case(
        "train-into-finished-pretrain-run",
        lambda fx, run: ["train", "--recipe", "smoke", "--output-dir", run, *_smoke_sets(fx.data)],
        "--overwrite",
        lambda fx: fx.run_copy(),
    ),
    Case(
        "pretrain-into-legacy-run",
        lambda fx, run: ["pretrain", "--recipe", "smoke", "--output-dir", run],
        "already holds a run",
        lambda fx: fx.run_copy(legacy=True),
    ),
    Case(
        "second-process-while-locked",
        lambda fx, run: ["pretrain", "--output-dir", run, "--resume"],
        f"in use by another sslvit process (pid {os.getpid()}",
        _lock,
    ),
    Case(
        "resume-and-overwrite",
        lambda fx, run: ["pretrain", "--output-dir", run, "--resume", "--overwrite"],
        "pass only one",
        lambda fx: fx.run_copy(),
    ),
    Case(
        "train-resume-on-pretrain-run",
        lambda fx, run: ["train", "--output-dir", run, "--resume"],
        "holds an `sslvit pretrain` run",
        lambda fx: fx.run_copy(),
    ),
    Case(
        "train-resume-on-legacy-pretrain-run",
        lambda fx, run: ["train", "--output-dir", run, "--resume"],
        "sslvit pretrain --output-dir",
        lambda fx: fx.run_copy(legacy=True),
    ),
    Case(
        "export-onto-existing-file",
        lambda fx, d: ["export", fx.run, "--to", "timm", f"{d}/OUT.safetensors"],
        "already exist",
        _existing("OUT.safetensors", "OUT.json"),
    ),
    Case(
        "export-onto-sibling-json",
        lambda fx, d: ["export", fx.run, "--to", "timm", f"{d}/OUT.safetensors"],
        "OUT.json' already exists",
        _existing("OUT.json"),
    ),
    Case(
        "export-onto-its-source",
        lambda fx, run: ["export", run, "--to", "timm", f"{run}/checkpoints/last.safetensors"],
        "--overwrite",
        lambda fx: fx.run_copy(),
    ),
    Case(
        "knn-into-dir-with-results",
        lambda fx, d: ["knn", "--checkpoint", fx.run, "--dataset", fx.data, "--output-dir", f"{d}/k"],
        "results.json' already exists",
        _existing("k/results.json"),
    ),
    Case(
        "knn-into-the-run-dir",
        lambda fx, run: ["knn", "--checkpoint", run, "--dataset", fx.data, "--output-dir", run],
        "already exist",
        lambda fx: fx.run_copy(),
    ),
    Case(
        "linear-probe-into-dir-with-results",
        lambda fx, d: ["linear-probe", "--checkpoint", fx.run, "--dataset", fx.data, "--output-dir", f"{d}/k"],
        "--overwrite",
        _existing("k/results.md"),
    ),
    Case(
        "adapt-into-a-run-dir",
        lambda fx, run: ["adapt", "--method", "linear", "--checkpoint", run, "--dataset", fx.data, "--output-dir", run],
        "already holds outputs",
        lambda fx: fx.run_copy(),
    ),
    # ---- settings that make the result meaningless: non-finite and out-of-range floats ------------------------
    *[
        Case(f"set-{kv}", pretrain_set(kv), needle)
        for kv, needle in [
            ("optim.lr=inf", "optim.lr: expected a finite number"),
            ("optim.lr=nan", "finite"),
            ("optim.lr=-inf", "finite"),
            ("optim.min_lr=inf", "finite"),
            ("optim.min_lr=1.0", "optim.min_lr must be in"),
            ("optim.weight_decay=nan", "finite"),
            ("optim.betas=[0.9,nan]", "optim.betas: expected a finite"),
            ("optim.betas=[0.9,1.5]", "optim.betas must be in [0, 1)"),
            ("optim.warmup_epochs=inf", "finite"),
            ("method.temperature=nan", "finite"),
            ("method.temperature=inf", "finite"),
            ("method.momentum=nan", "finite"),
            ("aug.brightness=-1", "aug.brightness must be >= 0"),
            ("aug.hue=0.7", "aug.hue must be in [0, 0.5]"),
            ("aug.blur_sigma=[2.0,0.1]", "aug.blur_sigma"),
            ("aug.crop_scale=[nan,1]", "finite"),
            ("model.mlp_ratio=0", "model.mlp_ratio must be > 0"),
            ("model.drop_path_rate=nan", "finite"),
            ("model.bootstrap.kd_temperature=inf", "finite"),
            ("eval.knn_temperature=nan", "finite"),
            ("eval.knn_temperature=0.0001", "eval.knn_temperature must be in [0.02, 10]"),
            ("diag.spike_z=inf", "finite"),
            ("train.time_budget_min=-1", "train.time_budget_min must be >= 0"),
            ("train.time_budget_min=nan", "finite"),
            ("train.time_budget_min=1", "needs a warm-up of at least 10 steps"),
        ]
    ],
    Case("train-set-optim.lr=inf", pretrain_set("optim.lr=inf", cmd="train"), "finite"),
    Case(
        "recipe-lr-.inf",
        lambda fx, _: ["pretrain", "--recipe", fx.lr_inf, "--output-dir", str(fx.case / "o")],
        "optim.lr: expected a finite number",
    ),
    Case(
        "linear-probe-set-probe.lr=nan",
        lambda fx, _: [
            "linear-probe",
            "--checkpoint",
            fx.run,
            "--dataset",
            fx.data,
            "--set",
            "probe.lr=nan",
            "--output-dir",
            str(fx.case / "k"),
        ],
        "probe.lr: expected a finite",
    ),
    Case(
        "adapt-set-adapt.lr=inf",
        lambda fx, _: [
            "adapt",
            "--method",
            "linear",
            "--checkpoint",
            fx.run,
            "--dataset",
            fx.data,
            "--set",
            "adapt.lr=inf",
            "--output-dir",
            str(fx.case / "a"),
        ],
        "adapt.lr: expected a finite",
    ),
    *[
        Case(f"knn-temperature-{t}", knn("run", "--temperature", t), "--temperature must be in [0.02, 10]")
        for t in ("nan", "inf", "0.0001", "-1", "0", "1e9")
    ],
    # ---- a flag that repeats a config key is its alias: the two given with different values ------------------
    Case(
        "knn-k-and-set-eval.knn_k-disagree",
        knn("run", "--k", "5", "--set", "eval.knn_k=3"),
        "--k 5 and --set eval.knn_k=3 disagree (--k is an alias of eval.knn_k)",
    ),
    Case(
        "knn-temperature-and-set-disagree",
        knn("run", "--temperature", "0.1", "--set", "eval.knn_temperature=0.5"),
        "--temperature 0.1 and --set eval.knn_temperature=0.5 disagree",
    ),
    Case("knn-set-eval.knn_k-zero", knn("run", "--set", "eval.knn_k=0"), "eval.knn_k must be >= 1"),
    Case(
        "adapt-method-and-set-disagree",
        lambda fx, _: [
            "adapt",
            "--method",
            "lora",
            "--checkpoint",
            fx.run,
            "--dataset",
            fx.data,
            "--set",
            "adapt.method=linear",
            "--output-dir",
            str(fx.case / "a"),
        ],
        "--method lora and --set adapt.method=linear disagree",
    ),
    # ---- a --set of a key the command does not read (it would have no effect) ---------------------------------
    Case(
        "knn-set-a-key-it-does-not-read",
        knn("run", "--set", "train.max_steps=5"),
        "sslvit knn does not read train.max_steps (--set train.max_steps=... would have no effect); it reads model.*",
    ),
    Case(
        "linear-probe-set-a-key-it-does-not-read",
        lambda fx, _: [
            "linear-probe",
            "--checkpoint",
            fx.run,
            "--dataset",
            fx.data,
            "--set",
            "eval.knn_k=3",
            "--output-dir",
            str(fx.case / "k"),
        ],
        "sslvit linear-probe does not read eval.knn_k",
    ),
    Case(
        "adapt-set-a-key-it-does-not-read",
        lambda fx, _: [
            "adapt",
            "--method",
            "linear",
            "--checkpoint",
            fx.run,
            "--dataset",
            fx.data,
            "--set",
            "probe.mode=protocol",
            "--output-dir",
            str(fx.case / "a"),
        ],
        "sslvit adapt does not read probe.mode",
    ),
    Case(
        "export-set-a-key-it-does-not-read",
        lambda fx, _: ["export", fx.run, "--to", "timm", str(fx.case / "o.safetensors"), "--set", "train.max_steps=1"],
        "sslvit export does not read train.max_steps",
    ),
    Case(
        "diagnose-set-a-key-it-does-not-read",
        lambda fx, run: ["diagnose", run, "--set", "data.dataset=fmnist"],
        "sslvit diagnose does not read data.dataset",
        lambda fx: fx.run_copy(),
    ),
    Case(
        "pretrain-set-a-key-it-does-not-read",
        pretrain_set("probe.mode=protocol"),
        "sslvit pretrain does not read probe.mode",
    ),
    Case(
        "train-set-a-key-it-does-not-read",
        pretrain_set("method.temperature=0.1", cmd="train"),
        "sslvit train does not read method.temperature",
    ),
    Case(
        "search-set-a-key-it-does-not-read",
        lambda fx, _: [
            "search",
            "--recipe",
            "vitas_smoke",
            "--output-dir",
            str(fx.case / "s"),
            "--set",
            "adapt.lr=0.1",
        ],
        "sslvit search does not read adapt.lr",
    ),
    Case(
        "sweep-grid-a-key-pretrain-does-not-read",
        lambda fx, _: [
            "sweep",
            "--recipe",
            "smoke",
            "--grid",
            "probe.lr=1,2",
            "--output-dir",
            str(fx.case / "s"),
            "--dry-run",
        ],
        "sslvit sweep does not read probe.lr (--grid probe.lr=... would have no effect)",
    ),
    # ---- a backbone or its metadata that cannot give a meaningful result ---------------------------------------
    Case("knn-nan-weights", knn("nan"), "non-finite weights (1 NaN/inf values in 'blocks.0.attn.qkv.weight')"),
    Case(
        "export-nan-weights",
        lambda fx, _: ["export", fx.nan, "--to", "timm", str(fx.case / "o.safetensors")],
        "non-finite weights",
    ),
    Case("knn-std-zero", knn("std0"), "std must be > 0"),
    Case("knn-std-negative", knn("stdneg"), "std must be > 0"),
    Case("knn-std-string", knn("stdstr"), "std must be a list of 1 finite number"),
    Case("knn-mean-nan", knn("meannan"), "mean must be a list"),
    Case("knn-data-img-size-negative", knn("imgneg"), "img_size must be a positive integer"),
    Case("knn-data-in-chans-2", knn("chans2"), "in_chans must be 1 or 3"),
    Case("knn-no-data-config", knn("nodata"), "without 'data_config'"),
    Case("knn-model-config-bad-json", knn("badjson"), "metadata 'model_config' is not valid JSON"),
    Case(
        "export-model-config-bad-json",
        lambda fx, _: ["export", fx.badjson, "--to", "timm", str(fx.case / "o.safetensors")],
        "is not valid JSON",
    ),
    Case("knn-no-model-config", knn("nomodel"), "without 'model_config'"),
    Case("knn-model-config-list", knn("mclist"), "must be a JSON object"),
    Case("knn-model-config-unknown-key", knn("mcunknown"), "unknown config key 'model.widht'"),
    Case("knn-model-img-size-0", knn("imgsize0"), "model.img_size and model.patch_size must be positive"),
    Case("knn-model-patch-5", knn("patch5"), "model.patch_size=5 does not divide"),
    Case("knn-model-heads-3", knn("heads0"), "model.num_heads=3 does not divide the embedding dim 64"),
    Case("knn-train-pt-no-config", knn("noconfig"), "'config' entry is missing"),
    Case("knn-train-pt-config-list", knn("configlist"), "'config' entry is a list"),
    Case("knn-train-pt-no-data-config", knn("nodatacfg"), "'data_config' entry is missing"),
    # ---- recipes and config files ------------------------------------------------------------------------------
    Case(
        "recipe-duplicate-section",
        lambda fx, _: ["pretrain", "--recipe", fx.dup_section, "--output-dir", str(fx.case / "o")],
        "key 'train' appears twice",
    ),
    Case(
        "recipe-duplicate-key",
        lambda fx, _: ["pretrain", "--recipe", fx.dup_key, "--output-dir", str(fx.case / "o")],
        "key 'img_size' appears twice (first at line 3)",
    ),
    Case(
        "recipe-is-a-list",
        lambda fx, _: ["pretrain", "--recipe", fx.list, "--output-dir", str(fx.case / "o")],
        "holds a YAML list, not a mapping",
    ),
    Case(
        "recipe-is-a-string",
        lambda fx, _: ["train", "--recipe", fx.string, "--output-dir", str(fx.case / "o")],
        "holds a YAML str, not a mapping",
    ),
    Case(
        "recipe-not-utf8",
        lambda fx, _: ["pretrain", "--recipe", fx.latin1, "--output-dir", str(fx.case / "o")],
        "is not UTF-8 text (byte 0xe9 at line 2)",
    ),
    Case(
        "resume-config-yaml-is-a-list",
        lambda fx, run: ["pretrain", "--output-dir", run, "--resume"],
        "config.yaml' holds a YAML list",
        _cfg_list,
    ),
    Case(
        "adapt-recipe-is-a-list",
        lambda fx, _: [
            "adapt",
            "--method",
            "linear",
            "--checkpoint",
            fx.run,
            "--dataset",
            fx.data,
            "--recipe",
            fx.list,
            "--output-dir",
            str(fx.case / "a"),
        ],
        "not a mapping",
    ),
    # ---- dataset specs -----------------------------------------------------------------------------------------
    Case(
        "spec-unknown-option",
        lambda fx, _: [
            "pretrain",
            "--recipe",
            "smoke",
            "--output-dir",
            str(fx.case / "o"),
            "--set",
            f"data.dataset={fx.data}?bogus=1",
        ],
        "unknown option 'bogus'; valid options for fmnist: subset, subset_seed",
    ),
    Case("spec-typo-subest", knn("run", dataset="fmnist?subest=100"), "(did you mean 'subset'?)"),
    Case("spec-option-twice", knn("run", dataset="fmnist?subset=10&subset=20"), "given twice"),
    Case("spec-option-without-value", knn("run", dataset="fmnist?subset"), "has no value"),
    Case("spec-fewshot-typo", knn("run", dataset="fewshot:/nowhere?shot=1&seed=0"), "(did you mean 'shots'?)"),
    # ---- checkpoints that are not what they claim --------------------------------------------------------------
    Case("random-bytes-pt", knn("randpt"), "is not a PyTorch checkpoint (neither a torch.save zip nor a pickle"),
    Case("empty-pt", knn("empty"), "is empty (0 bytes)"),
    Case("torch-zip-named-safetensors", knn("zip_as"), "is not a safetensors file but a PyTorch zip checkpoint"),
    Case("random-bytes-safetensors", knn("randst"), "is not a readable safetensors file"),
    Case("code-pickle-zip", knn("code_zip"), "names the Python callable posix.system", proc=True),
    Case("code-pickle-legacy", knn("code_legacy"), "names the Python callable posix.system", proc=True),
    Case("code-pickle-raw", knn("code_raw"), "is a raw Python pickle", proc=True),
    Case("code-pickle-renamed-safetensors", knn("code_renamed"), "rename it to .pt", proc=True),
    Case(
        "resume-all-checkpoints-corrupt",
        lambda fx, run: ["pretrain", "--output-dir", run, "--resume"],
        "no usable checkpoint",
        _all_corrupt,
    ),
    # ---- click's own usage errors, one line too ----------------------------------------------------------------
    Case(
        "knn-missing-dataset",
        lambda fx, _: ["knn", "--checkpoint", fx.run],
        "Missing option '--dataset'; see 'sslvit knn --help'",
        proc=True,
    ),
    Case("knn-k-zero", knn("run", "--k", "0"), "Invalid value for '--k'"),
    Case("unknown-command", lambda fx, _: ["pretrian"], "No such command 'pretrian'"),
    Case("unknown-option", lambda fx, _: ["pretrain", "--recipee", "smoke"], "No such option '--recipee'"),
    Case(
        "export-bad-target",
        lambda fx, _: ["export", fx.run, "--to", "onnx", str(fx.case / "o.safetensors")],
        "Invalid value for '--to'",
    ),
    Case("export-missing-out", lambda fx, _: ["export", fx.run], "Missing argument 'OUT'"),
]


def _snapshot(*dirs) -> dict:
    return {
        str(p): hashlib.sha256(p.read_bytes()).hexdigest()
        for d in dirs
        for p in sorted(Path(d).rglob("*"))
        if p.is_file()
    }


def _invoke(fx, argv, proc):
    if proc:
        env = {**os.environ, "TQDM_DISABLE": "1", "PYTHONWARNINGS": "default"}
        r = subprocess.run(
            [sys.executable, "-m", "ssl_vit", *argv], capture_output=True, text=True, env=env, cwd=fx.case, timeout=300
        )
        return r.returncode, r.stderr, None
    r = CliRunner().invoke(cli, argv)
    return r.exit_code, r.stderr, r.exception


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case, fx, tmp_path):
    fx.case, fx.holder = tmp_path, None
    made = case.setup(fx) if case.setup else None
    before = _snapshot(fx.root, tmp_path)
    try:
        code, err, exc = _invoke(fx, case.args(fx, made), case.proc)
    finally:
        if fx.holder is not None:
            fx.holder.close()
    # the loop's busy-CPU advice (engine/cpu.py) depends on the machine's load, not on the input: not counted
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("warning: the CPU is busy")]
    assert code == 2, (code, err, exc)
    assert exc is None or isinstance(exc, SystemExit), repr(exc)
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert case.needle in lines[0], lines[0]
    assert "Traceback" not in err
    after = _snapshot(fx.root, tmp_path)
    assert {p: h for p, h in after.items() if p in before} == before, "a pre-existing file changed"
    assert not (tmp_path / "PWNED").exists()


def test_the_table_covers_every_family():
    ids = " ".join(c.id for c in CASES)
    for family in (
        "finished-run",
        "locked",
        "export-onto",
        "set-optim.lr=inf",
        "knn-temperature",
        "nan-weights",
        "std-zero",
        "duplicate",
        "recipe-is-a-list",
        "not-utf8",
        "spec-unknown-option",
        "bad-json",
        "train-pt-no-config",
        "random-bytes-pt",
        "zip-named-safetensors",
        "train-resume-on-pretrain",
        "knn-missing-dataset",
        "disagree",
        "does-not-read",
    ):
        assert family in ids, family
    assert len(CASES) >= 80


# ---- what the rows above protect, done on purpose --------------------------------------------------------------
def test_lock_held_by_a_real_second_process(fx, tmp_path):
    fx.case = tmp_path
    run = Path(fx.run_copy())
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            (
                "import fcntl, json, os, sys, time\n"
                f"f = open({str(run / LOCK_NAME)!r}, 'r+'); fcntl.flock(f.fileno(), fcntl.LOCK_EX)\n"
                "f.seek(0); f.truncate(); f.write(json.dumps({'pid': os.getpid(), 'task': 'pretrain'})); f.flush()\n"
                "print('locked', flush=True); time.sleep(120)\n"
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        r = CliRunner().invoke(cli, ["pretrain", "--output-dir", str(run), "--resume"])
    finally:
        holder.kill()
        holder.wait()
    assert r.exit_code == 2 and f"in use by another sslvit process (pid {holder.pid}" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    # the holder is gone: the kernel released its lock, nothing stale is left behind
    from ssl_vit.core.rundir import claim_run_dir

    with claim_run_dir(run, "pretrain", resume=True, log=lambda m: None):
        pass


def test_library_callers_are_refused_too_and_overwrite_starts_over(fx, tmp_path):
    from ssl_vit.config import load_config
    from ssl_vit.errors import SslvitError
    from ssl_vit.runs import pretrain

    fx.case = tmp_path
    run = Path(fx.run_copy())
    (run / "notes.txt").write_text("mine\n")
    cfg = load_config("smoke", _smoke_sets(fx.data)[1::2])
    with pytest.raises(SslvitError, match="already holds a run"):
        pretrain(cfg, run, log=lambda m: None)
    msgs = []
    pretrain(cfg, run, overwrite=True, log=msgs.append)
    deleted = [m for m in msgs if m.startswith("--overwrite: deleted")]
    assert len(deleted) == 1 and "checkpoints/" in deleted[0] and "metrics.jsonl" in deleted[0]
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(steps) and steps[0] == 1 and steps[-1] == 2  # one run's records, not two interleaved
    assert len(list((run / "tensorboard").glob("events.out.tfevents.*"))) == 1
    assert (run / "notes.txt").read_text() == "mine\n"  # not a run file: left alone
    assert json.loads((run / LOCK_NAME).read_text())["task"] == "pretrain"


def test_export_overwrite_replaces_both_files(fx, tmp_path):
    (tmp_path / "OUT.safetensors").write_text("old")
    (tmp_path / "OUT.json").write_text("old")
    r = CliRunner().invoke(cli, ["export", fx.run, "--to", "timm", str(tmp_path / "OUT.safetensors"), "--overwrite"])
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "OUT.json").read_text())["model_kwargs"]["embed_dim"] == 64


def _float_keys():
    import dataclasses
    import typing

    from ssl_vit.config.loading import _hints
    from ssl_vit.config.schema import Config

    def walk(cls, prefix):
        for f in dataclasses.fields(cls):
            t = _hints(cls)[f.name]
            if dataclasses.is_dataclass(t):
                yield from walk(t, prefix + f.name + ".")
            elif typing.get_origin(t) is tuple and float in typing.get_args(t):
                yield prefix + f.name, True
            elif t is float or float in typing.get_args(t):  # float, Optional[float]
                yield prefix + f.name, False

    return list(walk(Config, ""))


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", ".nan", "-.inf"])
def test_every_float_setting_must_be_finite(value):
    from ssl_vit.config import Config, apply_overrides
    from ssl_vit.errors import SslvitError

    keys = _float_keys()
    assert len(keys) > 40 and ("optim.lr", False) in keys and ("optim.betas", True) in keys
    for key, is_tuple in keys:
        item = f"{key}=[0.5,{value}]" if is_tuple else f"{key}={value}"
        with pytest.raises(SslvitError, match=f"{key}: expected a finite number"):
            apply_overrides(Config(), [item])
