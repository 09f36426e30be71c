"""Long-running actions with visible progress: feature extraction and training in ``st.status``.

    ok = extract_with_status(settings, ds, "train", "original")
    manifest = train_with_status(request, settings)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd
import streamlit as st

from lib.data.sources import Dataset
from lib.errors import UserFacingError
from lib.models.heads import EpochReport
from lib.pipeline.features import ExtractProgress
from lib.store.manifest import RunManifest
from ui import state
from ui.text import show_error


def _fmt_eta(seconds: float) -> str:
    if seconds == float("inf"):
        return "?"
    return f"{int(seconds // 60)}m{int(seconds % 60):02d}s" if seconds >= 60 else f"{seconds:.0f}s"


def progress_reporter(bar: Any, label: str) -> Any:
    """A progress callback that writes images/s and ETA into ``bar``."""

    def report(p: ExtractProgress) -> None:
        bar.progress(min(p.done / max(p.total, 1), 1.0),
                     text=f"{label}: {p.done:,}/{p.total:,} images · {p.images_per_second:,.0f} img/s · ETA {_fmt_eta(p.eta_seconds)}")  # fmt: skip

    return report


def extract_with_status(settings: state.Settings, ds: Dataset, split: str, view: str, engine: Any = None) -> bool:
    """Extract one split's features (or load them) inside ``st.status``, here or on Ray (``engine``); False if it failed."""
    from lib.pipeline.features import ensure_features
    from ui import cached

    with st.status(f"Features: {split}/{view} @ {settings.image_size}px", expanded=True) as status:
        bar = st.progress(0.0, text="loading the backbone (or starting Ray and its workers)…")
        ray_note = ""
        try:
            spec = cached.backbone_spec(settings.backbone)
            result = ensure_features(ds, split, spec, settings.layout, settings.image_size, view, progress=progress_reporter(bar, split), engine=engine)
            stats = getattr(engine, "last_stats", None) if not result.cache_hit else None
            if stats is not None and stats.workers:
                ray_note = f" on {stats.workers} Ray workers, {len(stats.images_per_node)} node(s); start-up {stats.startup_seconds:.1f}s"
        except UserFacingError as err:
            status.update(label="Feature extraction failed", state="error")
            show_error(err)
            return False
        note = "loaded from cache" if result.cache_hit else f"{result.images_per_second:,.0f} img/s{ray_note}"
        status.update(label=f"{split}/{view}: {result.features.shape[0]:,} x {result.features.shape[1]} features ({note})",
                      state="complete", expanded=False)  # fmt: skip
    return True


def train_with_status(request: Any, settings: state.Settings, engine: Any = None) -> RunManifest | None:
    """Run :func:`lib.pipeline.train_run` with live progress and a live loss/accuracy chart."""
    import altair as alt

    from lib.pipeline.training import train_run

    rows: list[dict[str, Any]] = []
    with st.status("Training…", expanded=True) as status:
        bar = st.progress(0.0, text="features")
        chart = st.empty()

        def on_stage(msg: str) -> None:
            st.write(msg)  # a running log of the stages inside the status box

        def on_extract(label: str, p: ExtractProgress) -> None:
            progress_reporter(bar, f"extracting {label}")(p)

        def on_epoch(r: EpochReport) -> None:
            bar.progress(min(r.epoch / r.epochs, 1.0), text=f"epoch {r.epoch}/{r.epochs} · {r.elapsed:.1f}s")
            for metric in ("loss", "accuracy", "val_loss", "val_accuracy"):
                value = getattr(r, metric)
                if value is not None:
                    rows.append({"epoch": r.epoch, "metric": metric, "value": value, "kind": "loss" if "loss" in metric else "accuracy"})
            df = pd.DataFrame(rows)
            line = alt.Chart(df).mark_line(point=True).encode(x="epoch:Q", y=alt.Y("value:Q", title=None), color="metric:N")
            chart.altair_chart(line.properties(height=180).facet(column=alt.Column("kind:N", title=None)).resolve_scale(y="independent"))

        try:
            manifest = train_run(request, settings.cache_dir, on_stage=on_stage, on_extract=on_extract, on_epoch=on_epoch, engine=engine)
        except UserFacingError as err:
            status.update(label="Training failed", state="error")
            show_error(err)
            return None
        acc = manifest.metrics.test_accuracy
        status.update(label=f"Run {manifest.run_id}: test accuracy {acc:.2%} in {manifest.timings['train_seconds']:.1f}s",
                      state="complete", expanded=False)  # fmt: skip
    return manifest


def finetune_with_status(request: Any, cfg: Any, settings: state.Settings) -> RunManifest | None:
    """Run :func:`lib.pipeline.finetune.finetune_run` with a progress bar: epoch, images, images/s and ETA."""
    from lib.pipeline.finetune import finetune_run

    with st.status("Fine-tuning…", expanded=True) as status:
        bar = st.progress(0.0, text="warm start")

        def on_progress(p: Any) -> None:
            bar.progress(min(p.images_done / max(p.images_total, 1), 1.0),
                         text=f"epoch {p.epoch}/{p.epochs} · {p.images_done:,}/{p.images_total:,} images · {p.images_per_second:,.0f} img/s · "
                              f"ETA {_fmt_eta(p.eta_seconds)} · loss {p.loss:.3f}")  # fmt: skip

        try:
            manifest = finetune_run(request, settings.cache_dir, cfg, on_stage=st.write, on_progress=on_progress)
        except UserFacingError as err:
            status.update(label="Fine-tuning failed (finished epochs are kept and resume)", state="error")
            show_error(err)
            return None
        status.update(label=f"Run {manifest.run_id}: test accuracy {manifest.metrics.test_accuracy:.2%} after fine-tuning "
                            f"({manifest.timings['train_seconds']:.0f}s)", state="complete", expanded=False)  # fmt: skip
    return manifest


def measure_with_status(settings: state.Settings, configs: list[tuple[str, int, str]], limit: int | None) -> None:
    """Measure benchmark configurations with a progress bar and ETA, then rerun so the page shows the rows.

    Every finished row is stored at once, so leaving the page (or a failure) keeps what was measured.
    """
    import time

    from lib.analysis.benchmark import run_configurations
    from ui.text import md_escape

    with st.status(f"Measuring {len(configs)} configurations…", expanded=True) as status:
        bar = st.progress(0.0)
        started = time.perf_counter()

        def report(done: int, total: int, what: str) -> None:
            elapsed = time.perf_counter() - started
            eta = f" · ETA {_fmt_eta(elapsed / done * (total - done))}" if done else ""
            bar.progress(min(done / max(total, 1), 1.0), text=f"{done}/{total} configurations · {md_escape(what)}{eta}")

        try:
            run_configurations(settings.source, configs, settings.cache_dir, limit, report)
        except UserFacingError as err:
            status.update(label="Measuring failed (finished rows are kept)", state="error")
            show_error(err)
            return
        status.update(label="Measured", state="complete")
    st.rerun()


def stage_with_status(label: str, done: str, failed: str, work: Callable[[Callable[[str, float], None]], Any]) -> None:
    """Run ``work(progress)`` (progress: stage text, fraction) inside a status box with a progress bar, then rerun;
    a :class:`UserFacingError` is shown as a message and stops the page."""
    from ui.text import md_escape

    with st.status(label, expanded=True) as status:
        bar = st.progress(0.0)
        try:
            work(lambda stage, f: bar.progress(min(max(f, 0.0), 1.0), text=md_escape(stage)))
        except UserFacingError as err:
            status.update(label=failed, state="error")
            show_error(err)
            st.stop()
        status.update(label=done, state="complete")
    st.rerun()
