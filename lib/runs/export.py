"""Export a run as one self-contained SavedModel: raw uint8 images in, class probabilities out.

The export bundles the backbone, the preprocessing, the head and (if the run used it) flip
test-time augmentation, through the same :mod:`lib.models.predict` path the app uses. It needs
only TensorFlow to reload, not this project:

    import tensorflow as tf
    model = tf.saved_model.load("cache/exports/<run-id>")
    probs = model(images_uint8)                 # [N, H, W, 3] uint8, any H and W
    names = [n.decode() for n in model.class_names.numpy()]

The output folder is never deleted blindly: an existing non-empty folder is refused unless
``force`` is given, and even then only a previous export of this project (recognised by its
marker file) is replaced. The new export is written beside it and renamed into place.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lib.errors import RunError
from lib.models.predict import tf_probabilities
from lib.runs.registry import load_run
from lib.runtimes.backbones import load_backbone, resolve_backbone
from lib.safe_text import terminal_text
from lib.store.atomic import atomic_dir, atomic_path
from lib.store.layout import CacheLayout

EXPORT_MARKER = "transfer_explorer_export.json"  # present in every export this project writes


# What an export made by a version that did not list its files holds: the SavedModel's own names and ours.
_LEGACY_FILES = {
    "saved_model.pb",
    "fingerprint.pb",
    "keras_metadata.pb",
    "class_names.txt",
    "class_names.json",
    "run_manifest.json",
    EXPORT_MARKER,
}
_LEGACY_FOLDERS = {"variables", "assets"}


def _exported_entries(out: Path) -> set[str] | None:
    """The relative paths (files and folders) the export at ``out`` wrote, from its marker; None for an older marker."""
    try:
        marker = json.loads((out / EXPORT_MARKER).read_text())
    except (OSError, ValueError):
        return None
    listed = marker.get("files") if isinstance(marker, dict) else None
    if not isinstance(listed, list) or not all(isinstance(f, str) for f in listed):
        return None
    entries = set(listed)
    for name in listed:
        entries.update(str(parent) for parent in Path(name).parents if str(parent) != ".")
    return entries | {EXPORT_MARKER}


def foreign_entries(out: Path) -> list[str]:
    """What is in an earlier export folder that the export did not write (a user's notes, results): never deleted."""
    known = _exported_entries(out)
    found = sorted(p.relative_to(out).as_posix() for p in out.rglob("*"))
    if known is not None:
        return [f for f in found if f not in known]
    return [f for f in found if f not in _LEGACY_FILES and f.split("/", 1)[0] not in _LEGACY_FOLDERS]


def check_export_target(out: Path, force: bool) -> None:
    """Refuse an ``out`` that is a file, a non-empty folder that is not an export, an export without ``force``, or an
    export that now also holds anything it did not write (named in the message)."""
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise RunError(f"--out {out} is an existing file, not a folder; choose a new folder name.")
    if not out.is_dir() or not any(out.iterdir()):
        return
    if not (out / EXPORT_MARKER).is_file():
        raise RunError(
            f"--out {out} is a folder that holds other files and is not an export of this project; nothing was "
            "changed. Choose a new or empty folder."
        )
    if not force:
        raise RunError(f"--out {out} already holds an export; pass --force to replace it, or choose another folder.")
    extra = foreign_entries(out)
    if extra:
        shown = ", ".join(extra[:5]) + (f" and {len(extra) - 5} more" if len(extra) > 5 else "")
        raise RunError(
            f"--out {out} holds an earlier export and also files it did not write ({shown}); --force replaces only the "
            "export's own files, so nothing was changed. Move them out, or choose another folder."
        )


def export_run(layout: CacheLayout, run_id: str, out: Path | str, force: bool = False) -> Path:
    """Write the run's full model to ``out`` (atomically, see the module docs) and return that path."""

    out = Path(out).expanduser()
    check_export_target(out, force)
    run = load_run(layout, run_id)
    m = run.manifest
    if m.finetuned:
        if not (run.model_dir / "saved_model.pb").exists():
            raise RunError(
                f"Run {run_id} fine-tuned its backbone but holds no saved model (made by an older version); train it "
                "again to export it."
            )
        module = None
    else:
        module = _frozen_module(layout, run)
    with atomic_dir(out, install=lambda tmp, target: _swap_into_place(tmp, target, force)) as tmp:
        if module is None:
            shutil.copytree(run.model_dir, tmp, dirs_exist_ok=True)
        else:
            try:
                save_module(module, tmp)
            except Exception as err:  # TensorFlow reports a full disk as its own error types, not OSError
                if "No space left" in str(err):
                    raise OSError(errno.ENOSPC, "No space left on device", str(out)) from err
                raise
        # One name per line, control characters escaped (a folder name can hold a newline); class_names.json is exact.
        (tmp / "class_names.txt").write_text(
            "\n".join(terminal_text(c).replace("\n", "\\n").replace("\t", "\\t") for c in run.classes) + "\n"
        )
        (tmp / "class_names.json").write_text(json.dumps(list(run.classes), ensure_ascii=False))
        shown = (
            "run_id",
            "label",
            "backbone",
            "image_sizes",
            "extra_backbones",
            "tta",
            "classes",
            "metrics",
            "head",
            "finetuned",
        )
        meta = {k: v for k, v in m.to_dict().items() if k in shown}
        (tmp / "run_manifest.json").write_text(json.dumps(meta, indent=2, default=str))
        written = sorted(
            p.relative_to(tmp).as_posix() for p in tmp.rglob("*")
        )  # folders too: a SavedModel has an empty assets/
        (tmp / EXPORT_MARKER).write_text(
            json.dumps({"run_id": run.run_id, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "files": written})
        )
    return out


def _swap_into_place(tmp: Path, out: Path, force: bool) -> None:
    """Rename ``tmp`` onto ``out``; a previous export (checked again, just before) is moved aside first, then
    removed."""
    check_export_target(out, force)
    old = None
    if out.is_dir() and any(out.iterdir()):
        old = out.with_name(f".{out.name}.replaced-{time.time_ns()}")
        os.replace(out, old)
    elif out.is_dir():
        out.rmdir()  # an empty folder the user made for us
    os.replace(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def probability_module(fn: Callable[[Any], Any], classes: list[str], sizes: list[int], keep: Any) -> Any:
    """A tf.Module: ``__call__`` maps uint8 ``[N, H, W, 3]`` images to probabilities with ``fn``.

    ``keep`` holds whatever owns the variables ``fn`` uses (a Keras model, a backbone), so
    they are saved with it; ``class_names`` and ``image_sizes`` travel as variables.
    """
    import tensorflow as tf

    class ProbabilityModel(tf.Module):
        def __init__(self) -> None:
            super().__init__(name="transfer_model")
            self.keep = keep
            self.class_names = tf.Variable(classes, trainable=False)
            self.image_sizes = tf.Variable(sizes, trainable=False)

        @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")])
        def __call__(self, images: Any) -> Any:
            return fn(images)

    return ProbabilityModel()


def save_module(module: Any, path: Path | str) -> None:
    """Save a :func:`probability_module` as a SavedModel with a ``serving_default`` signature."""
    import tensorflow as tf

    tf.saved_model.save(module, str(path), signatures={"serving_default": module.__call__})


def _frozen_module(layout: CacheLayout, run: Any) -> Any:

    m = run.manifest
    backbones = []
    for handle, identity, _sizes in m.backbones():
        spec = resolve_backbone(handle)
        if not spec.trainable:
            raise RunError(
                "Export needs a SavedModel or TF Hub backbone; a .tflite backbone cannot be embedded in a SavedModel."
            )
        if spec.identity() != identity:
            raise RunError(
                f"The backbone at {handle} is not the one run {run.run_id} was trained with (its contents changed)."
            )
        backbones.append(load_backbone(spec))
    fn, weights = tf_probabilities([b.forward_fn for b in backbones], run.head, m.part_keys(), m.tta)
    keep = {"backbone": backbones[0].module, "head": weights} | {
        f"backbone_{j}": b.module for j, b in enumerate(backbones[1:], start=1)
    }
    return probability_module(fn, list(run.classes), list(m.image_sizes), keep)


def check_zip_target(target: Path, force: bool) -> None:
    """Refuse to overwrite a zip unless ``force`` is given and it is a zip of one of this project's exports."""
    if not target.exists() and not target.is_symlink():
        return
    ours = False
    try:
        with zipfile.ZipFile(target) as zf:
            ours = any(Path(n).name == EXPORT_MARKER for n in zf.namelist())
    except (OSError, zipfile.BadZipFile):
        ours = False
    if not ours:
        raise RunError(f"{target} already exists and is not a zip of this project's exports; nothing was changed.")
    if not force:
        raise RunError(f"{target} already holds an exported zip; pass --force to replace it.")


def zip_folder(folder: Path | str, target: Path | str, force: bool = True) -> Path:
    """Zip ``folder`` into ``target`` atomically (for downloads); an existing zip is replaced only if it is ours."""
    folder, target = Path(folder), Path(target)
    check_zip_target(target, force)
    with atomic_path(target, suffix=".zip") as tmp:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
            for p in sorted(folder.rglob("*")):
                if p.is_file():
                    zf.write(p, Path(folder.name) / p.relative_to(folder))
    return target
