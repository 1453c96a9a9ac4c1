"""``imagefolder:<root>``: ``<root>/train/<class>/<image>`` and ``<root>/val/<class>/<image>``.

Class discovery and the file walk are torchvision's (``ImageFolder.find_classes`` / ``make_dataset``);
what is added is a bad-file policy: zero-byte, non-image and undecodable files are reported with their
path and reason, then skipped (``data.on_bad_image=skip``) or rejected (``fail``, the default) before
training starts, not hours into it.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import List, Tuple

from PIL import Image
from torchvision.datasets.folder import find_classes
from torchvision.datasets.folder import IMG_EXTENSIONS

from ssl_vit.data.images import FileImages
from ssl_vit.errors import SslvitError

SPLIT_DIRS = {"train": ("train",), "val": ("val", "validation"), "test": ("test", "val", "validation")}
VERIFY_LIMIT = 50_000   # above this many files only cheap checks (size, extension) run up front


def check_image(path: str) -> str:
    """Return '' if ``path`` looks like a readable image, else the reason it is not."""
    try:
        if os.path.getsize(path) == 0:
            return "zero-byte file"
    except OSError as e:
        return e.strerror or "unreadable"
    if not path.lower().endswith(IMG_EXTENSIONS):
        return "not an image file extension"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as im:
                im.load()  # decodes fully: catches truncated files that verify() lets through
    except Exception as e:  # noqa: BLE001 - PIL raises many types for bad files
        return f"cannot decode ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})".rstrip(": )") + ")"
    return ""


def load_imagefolder(root: str, split: str, on_bad_image: str = "fail") -> FileImages:
    if not root:
        raise SslvitError("imagefolder needs a root: write 'imagefolder:<root>' with <root>/train and <root>/val")
    base = Path(root)
    if not base.is_dir():
        raise SslvitError(f"imagefolder root '{root}' does not exist; pass a folder holding train/ and val/")
    names = SPLIT_DIRS.get(split, (split,))
    folder = next((base / n for n in names if (base / n).is_dir()), None)
    if folder is None:
        raise SslvitError(f"imagefolder '{root}' has no '{names[0]}/' folder for split '{split}'; "
                          f"expected {root}/{names[0]}/<class>/<image>")
    classes, class_to_idx = find_classes(str(folder)) if any(folder.iterdir()) else ([], {})
    if not classes:
        raise SslvitError(f"'{folder}' has no class folders; expected {folder}/<class>/<image>")
    # every file, so that non-image files are reported rather than silently ignored
    all_files: List[Tuple[str, int]] = []
    for cls in classes:
        for dirpath, _, files in sorted(os.walk(folder / cls, followlinks=True)):
            all_files += [(os.path.join(dirpath, f), class_to_idx[cls]) for f in sorted(files)]
    if not all_files:
        raise SslvitError(f"'{folder}' holds no files; expected {folder}/<class>/<image>")
    full = len(all_files) <= VERIFY_LIMIT
    good, bad = [], []
    for path, label in all_files:
        if full:
            reason = check_image(path)
        else:
            reason = "zero-byte file" if os.path.getsize(path) == 0 else (
                "" if path.lower().endswith(IMG_EXTENSIONS) else "not an image file extension")
        (bad if reason else good).append((path, label) if not reason else (path, reason))
    if bad:
        listing = "; ".join(f"{p}: {r}" for p, r in bad[:5]) + (f"; ... {len(bad) - 5} more" if len(bad) > 5 else "")
        if on_bad_image == "fail":
            raise SslvitError(f"{len(bad)} bad file(s) in '{folder}': {listing}; remove them or "
                              f"--set data.on_bad_image=skip")
        warnings.warn(f"skipping {len(bad)} bad file(s) in '{folder}': {listing}", stacklevel=2)
    if not good:
        raise SslvitError(f"no readable images in '{folder}'")
    return FileImages(good, list(classes), f"imagefolder:{root}")


def pil_loader(path: str, in_chans: int = 3) -> Image.Image:
    with open(path, "rb") as f:
        img = Image.open(f)
        return img.convert("L" if in_chans == 1 else "RGB")
