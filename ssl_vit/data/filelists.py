"""``<path> <label>`` list files (VTAB-1k split files, few-shot ``*_meta.list`` files), read strictly.

Every problem is reported as ``<list file>:<line>: <what is wrong>; <how to fix it>`` on one line:

* a line that is not ``<path> <integer label>`` (the path may contain spaces: the label is the last
  whitespace-separated field, as NOAH's few-shot reader splits it),
* a negative label, or one that is not a class of the task (``check_labels``),
* an image that does not exist, is empty, or (for small lists, which are decoded once up front) cannot be
  decoded -- these follow ``data.on_bad_image``: ``fail`` (default) raises, ``skip`` warns and drops them.

Example::

    entries = read_list(Path("vtab-1k/dtd/train800.txt"))          # [ListEntry('images/train800/000000.jpg', 12, 1), ...]
    samples = resolve_images(entries, Path("vtab-1k/dtd"), Path("vtab-1k/dtd/train800.txt"), "fail")
"""
from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Dict, Iterable, List, NamedTuple, Tuple

from ssl_vit.data.imagefolder import check_image
from ssl_vit.data.images import FileImages
from ssl_vit.errors import SslvitError

# Lists up to this long are decoded image by image when loaded (VTAB train800/val200/train800val200 and
# few-shot train lists): a corrupt file fails before training, not at epoch 37. Longer lists (test sets)
# get the cheap checks (exists, non-empty) and decode errors surface where the images are decoded.
DECODE_CHECK_LIMIT = 2000
_DECODED_OK: set = set()     # (path, size, mtime_ns) decoded fine in this process: train800val200 = train800 + val200


def _decodes(path: str) -> str:
    """check_image with a per-process memo keyed on the file's size and mtime ('' = fine)."""
    try:
        st = os.stat(path)
    except OSError:
        return "file not found"
    key = (path, st.st_size, st.st_mtime_ns)
    if key in _DECODED_OK:
        return ""
    reason = check_image(path)
    if not reason:
        _DECODED_OK.add(key)
    return reason


class ListEntry(NamedTuple):
    path: str       # as written in the list (relative)
    label: int
    line: int       # 1-based line number in the list file


def read_list(list_path: Path, fix: str = "") -> List[ListEntry]:
    """Parse a ``<path> <label>`` file. Blank lines are ignored; everything else must parse."""
    list_path = Path(list_path)
    try:
        text = list_path.read_text()
    except UnicodeDecodeError:
        raise SslvitError(f"'{list_path}' is not a text file; it should hold '<image path> <label>' lines"
                          + (f"; {fix}" if fix else "")) from None
    except OSError as e:
        raise SslvitError(f"cannot read '{list_path}' ({e.strerror}); {fix or 'check the path'}") from None
    out: List[ListEntry] = []
    for n, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        parts = line.rsplit(None, 1)
        if len(parts) != 2:
            raise SslvitError(f"{list_path}:{n}: expected '<image path> <integer label>', got '{_short(line)}'; "
                              f"fix or delete the line")
        path, label = parts
        try:
            value = int(label)
        except ValueError:
            raise SslvitError(f"{list_path}:{n}: label '{_short(label)}' is not an integer; each line is "
                              f"'<image path> <integer label>'") from None
        if value < 0:
            raise SslvitError(f"{list_path}:{n}: negative label {value}; labels are class indices 0, 1, 2, ...")
        out.append(ListEntry(path, value, n))
    return out


def check_labels(entries: Iterable[ListEntry], list_path: Path, known, what: str, fix: str) -> None:
    """Raise on the first entry whose label is not in ``known`` (a set or range of class indices)."""
    for e in entries:
        if e.label not in known:
            raise SslvitError(f"{list_path}:{e.line}: label {e.label} is not a class of {what}; {fix}")


def resolve_images(entries: List[ListEntry], base: Path, list_path: Path, on_bad_image: str = "fail",
                   decode_check: bool | None = None) -> List[Tuple[str, int]]:
    """``entries`` -> ``[(absolute path, label)]``; missing / empty / undecodable images per ``on_bad_image``.

    ``decode_check`` (default: lists up to :data:`DECODE_CHECK_LIMIT` lines) decodes every image once.
    """
    decode = len(entries) <= DECODE_CHECK_LIMIT if decode_check is None else decode_check
    good: List[Tuple[str, int]] = []
    bad: List[Tuple[ListEntry, str]] = []
    for e in entries:
        path = os.path.join(base, e.path)
        if decode:
            reason = _decodes(path)
        else:
            try:
                reason = "zero-byte file" if os.path.getsize(path) == 0 else ""
            except OSError:
                reason = "file not found"
        if reason:
            bad.append((e, reason))
        else:
            good.append((path, e.label))
    if bad:
        first, reason = bad[0]
        more = f" (and {len(bad) - 1} more bad image(s) in this list)" if len(bad) > 1 else ""
        if on_bad_image == "fail":
            raise SslvitError(f"{list_path}:{first.line}: image '{first.path}' {reason} under '{base}'{more}; "
                              f"restore it, rebuild the split files, or --set data.on_bad_image=skip")
        warnings.warn(f"skipping {len(bad)} bad image(s) listed in '{list_path}' (first: line {first.line} "
                      f"'{first.path}': {reason})", stacklevel=2)
    if not good:
        raise SslvitError(f"'{list_path}' lists no usable images; rebuild the split files")
    return good


def read_meta(path: Path) -> Dict:
    """The optional ``task.json`` a builder writes next to the lists ({} when absent): ``classes``,
    ``in_chans``, ``img_size``, ``mean``, ``std`` and provenance."""
    path = Path(path)
    if not path.is_file():
        return {}
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise SslvitError(f"'{path}' is not valid JSON ({e}); delete it or rebuild the folder") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("classes", []), list):
        raise SslvitError(f"'{path}' must be a JSON object with a 'classes' list; delete it or rebuild the folder")
    return meta


def file_images(samples: List[Tuple[str, int]], classes: List[str], name: str, meta: Dict) -> FileImages:
    """:class:`FileImages` with ``task.json``'s channels / nominal size / statistics over the defaults."""
    keys = {k: meta[k] for k in ("mean", "std") if k in meta}
    keys.update({k: int(meta[k]) for k in ("in_chans", "img_size") if k in meta})
    return FileImages(samples, classes, name, **{k: tuple(v) if k in ("mean", "std") else v for k, v in keys.items()})


def _short(s: str, n: int = 60) -> str:
    return s if len(s) <= n else s[: n - 3] + "..."
