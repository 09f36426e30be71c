"""The Train page's form: presets, every hyperparameter, the runtime, an exclude list and fine-tuning; and the
request it describes (what a run, or the equivalent CLI command, is made from)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import streamlit as st

from lib.bounds import widget
from lib.config import FLIP, ORIGINAL, VIEWS
from lib.errors import UserFacingError
from lib.models.heads import HEAD_PARAMS, HeadConfig, HeadParam, head_from_values, head_values
from lib.models.protocols import PROTOCOLS
from lib.models.specs import REGISTRY, preset_backbone
from lib.runtimes import choices, entry_default, registry, selectable
from ui import demo, state

CUSTOM = "(custom handle or path)"
NO_FIXES = "(the given labels)"
NO_EXCLUDE = "(none)"


def preset_values(settings: state.Settings, name: str) -> dict[str, Any]:
    """Form values of a named protocol."""
    p = PROTOCOLS[name]
    h = p.head
    values = head_values(h)
    return {
        "t_sizes": list(p.image_sizes or [settings.image_size]),
        **{param.form_key: values[param.field] for param in HEAD_PARAMS if param.column != "run"},
        "t_flip": FLIP in p.train_views,
        "t_tta": p.tta,
        "t_preset": name,
    }


def head_widget(where: Any, param: HeadParam) -> None:
    """The form's widget of one head hyperparameter, from its declaration."""
    if param.widget == "radio":
        where.radio(param.label, list(param.choices), key=param.form_key, horizontal=True)
    elif param.widget == "select":
        where.selectbox(param.label, list(param.choices), key=param.form_key)
    elif param.widget == "slider":
        where.slider(param.label, **widget(param.bound or ""), key=param.form_key)
    else:
        extra = {"format": param.fmt} if param.fmt else {}
        where.number_input(
            param.label, **widget(param.bound or "", zero_means_off=param.zero_means_off), key=param.form_key, **extra
        )


def apply_preset(settings: state.Settings, name: str) -> None:
    """Fill the form with a named protocol (a button's callback)."""
    st.session_state.update(preset_values(settings, name))


def fix_lists(settings: state.Settings) -> list[Path]:
    """The saved label lists (fixes, or another annotation such as CIFAR-10N's), newest first."""
    from lib.data.labels import saved_label_lists

    return saved_label_lists(settings.layout)


def seed_defaults(settings: state.Settings, exclude_lists: list[Path]) -> None:
    """The form's first values (once per session), and an exclude list deleted since dropped."""
    defaults = {
        **preset_values(settings, "blog"),
        "t_head": "mlp",
        "t_epochs": 15,
        "t_steps": 0,
        "t_bs": 256,
        "t_patience": 5,
        "t_preset": "custom",
        "t_sizes": [settings.image_size],
        "t_seed": 0,
        "t_limit": 0,
        "t_label": "",
        "t_runtime": entry_default(),
        "t_exclude": NO_EXCLUDE,
        "t_relabel": NO_FIXES,
        "t_more": [],
        "t_ft": False,
        "t_ft_epochs": 3,
        "t_ft_size": 0,
        "t_ft_lr": 1e-4,
        "t_ft_bs": 32,
    }
    for key, value in defaults.items():
        st.session_state.setdefault(key, value)
    if st.session_state["t_exclude"] not in {NO_EXCLUDE, *(p.stem for p in exclude_lists)}:
        st.session_state["t_exclude"] = NO_EXCLUDE  # a list deleted since
    if st.session_state["t_relabel"] not in {NO_FIXES, *(p.stem for p in fix_lists(settings))}:
        st.session_state["t_relabel"] = NO_FIXES
    st.session_state.setdefault("t_backbone", settings.backbone if settings.backbone in REGISTRY else CUSTOM)
    st.session_state.setdefault("t_custom", "" if settings.backbone in REGISTRY else settings.backbone)


def presets_row(settings: state.Settings) -> None:
    """The Blog and Best preset buttons, and which preset the form holds."""
    p1, p2, p3 = st.columns([1, 1, 3])
    p1.button(
        "Blog protocol preset",
        on_click=apply_preset,
        args=(settings, "blog"),
        help=PROTOCOLS["blog"].description,
        type="secondary",
    )
    p2.button("Best preset", on_click=apply_preset, args=(settings, "best"), help=PROTOCOLS["best"].description)
    preset = st.session_state["t_preset"]
    p3.caption(
        f"Preset: **{preset}**. " + (PROTOCOLS[preset].description if preset in PROTOCOLS else "Your own settings.")
    )


def more_backbone_options(settings: state.Settings) -> list[str]:
    """Backbones to offer as further ones: the local SavedModel folders beside the project, then the registry."""
    from lib.models.specs import local_backbones

    local = [b for b in local_backbones() if not b.endswith(".tflite")]
    return list(dict.fromkeys([*local, *REGISTRY, *st.session_state.get("t_more", [])]))


def form(settings: state.Settings, exclude_lists: list[Path]) -> bool:
    """Draw the form; True when it was submitted."""
    sizes = sorted({96, 128, 160, 192, 224, settings.image_size})
    with st.form("train_form"):
        a, b, c = st.columns(3)
        a.selectbox("Backbone", [CUSTOM, *REGISTRY], key="t_backbone")
        a.text_input("Custom TF Hub handle, SavedModel folder or .tflite", key="t_custom")
        a.multiselect("Input sizes (several = multi-scale concatenation)", sizes, key="t_sizes")
        a.multiselect(
            "More backbones (their features are concatenated, each at its native size)",
            more_backbone_options(settings),
            key="t_more",
            accept_new_options=True,
            help="Several backbones in one run: each one's features (its own native size, the views chosen "
            "below) are appended to the first one's. Type a handle or path to add one that is not listed.",
        )
        d, e, f, g = st.columns(4)
        for param in HEAD_PARAMS:  # every head hyperparameter, declared once (lib.models.heads.HEAD_PARAMS)
            head_widget({"model": b, "training": c, "run": e}[param.column], param)
        d.checkbox("Train on flipped images too", key="t_flip")
        d.checkbox("Flip test-time augmentation", key="t_tta")
        e.selectbox(
            "Extraction runtime",
            choices(),
            key="t_runtime",
            help="auto: the faster of tf and litert for this backbone, size and machine (timed once, then kept; a "
            "small extraction stays on tf rather than pay for a conversion). "
            + " ".join(f"{n}: {registry()[n].description}." for n in selectable()),
        )
        f.number_input("Images per class (0 = all)", **widget("limit", zero_means_off=True), key="t_limit")
        g.text_input("Run label", key="t_label")
        g.selectbox(
            "Exclude list",
            [NO_EXCLUDE, *(p.stem for p in exclude_lists)],
            key="t_exclude",
            help="Images marked on the Data quality page are left out of training and scoring; the run records them.",
        )
        g.selectbox(
            "Label fixes",
            [NO_FIXES, *(p.stem for p in fix_lists(settings))],
            key="t_relabel",
            help="Train with the fixed labels of a saved list (fixed on Data quality, Browse, Evaluate or the map); "
            "the run records the list and its checksum, and Evaluate scores the test split against the given and "
            "the fixed labels.",
        )
        with st.expander(
            "Fine-tune the backbone too (end to end from the images; minutes per epoch on a CPU, seconds on a GPU)"
        ):
            h1, h2, h3, h4, h5 = st.columns(5)
            h1.checkbox(
                "Fine-tune",
                key="t_ft",
                help="Warm-starts a linear head on frozen features, then trains backbone and head together "
                "(BatchNorm statistics frozen; warm-up then cosine learning rate; a checkpoint after every epoch).",
            )
            h2.number_input("Epochs", **widget("finetune_epochs"), key="t_ft_epochs")
            h3.number_input(
                "Image size (0 = first input size)",
                **widget("image_size", zero_means_off=True),
                key="t_ft_size",
                step=32,
            )
            h4.number_input("Peak learning rate", **widget("finetune_lr"), key="t_ft_lr", format="%.6f")
            h5.number_input("Batch size", **widget("finetune_batch_size"), key="t_ft_bs")
        off: dict = demo.off("Training", help=demo.BACKGROUND)
        submitted = st.form_submit_button("Train", type="primary", **off)
        demo.note()
    return bool(submitted)


@dataclass
class TrainChoice:
    """What the submitted form asks for."""

    request: Any  # lib.pipeline.training.RunRequest
    finetune: Any  # lib.pipeline.finetune.FinetuneConfig, or None
    label: str
    exclude_file: Path | None
    relabel_file: Path | None = None


def request_from_form(settings: state.Settings, ds: Any, exclude_lists: list[Path]) -> TrainChoice:
    """The request the form's values describe; :class:`UserFacingError` (one line) for what cannot be trained."""
    from lib.data.excludes import read_exclude_file
    from lib.pipeline.training import RunRequest

    s = st.session_state
    backbone = s["t_custom"].strip() if s["t_backbone"] == CUSTOM else s["t_backbone"]
    if not backbone or not s["t_sizes"]:
        raise UserFacingError("Choose a backbone (or type a handle/path) and at least one input size.")
    head = head_from_values({param.field: s[param.form_key] for param in HEAD_PARAMS})
    sizes = tuple(sorted(int(x) for x in s["t_sizes"]))
    request = RunRequest(
        settings.source,
        backbone,
        head,
        sizes,
        VIEWS if s["t_flip"] else (ORIGINAL,),
        bool(s["t_tta"]),
        limit=int(s["t_limit"]) or None,
        protocol=s["t_preset"] if s["t_preset"] in PROTOCOLS else None,
        runtime=s["t_runtime"],
        more_backbones=tuple((str(b).strip(), None) for b in s["t_more"] if str(b).strip() != backbone),
    )
    if s["t_ft"] and request.more_backbones:
        raise UserFacingError("Fine-tuning trains one backbone end to end: clear 'More backbones' to fine-tune.")
    chosen = next((p for p in exclude_lists if p.stem == s["t_exclude"]), None)
    if chosen is not None:
        request.exclude = {split: [int(i) for i in v] for split, v in read_exclude_file(chosen, ds).items()}
    fix_file = next((p for p in fix_lists(settings) if p.stem == s["t_relabel"]), None)
    if fix_file is not None:
        from lib.data.labels import read_label_source

        request.relabel, request.relabel_source = read_label_source(fix_file, ds)
    cfg = None
    if s["t_ft"]:
        from lib.pipeline.finetune import FinetuneConfig

        cfg = FinetuneConfig(
            epochs=int(s["t_ft_epochs"]),
            learning_rate=float(s["t_ft_lr"]),
            batch_size=int(s["t_ft_bs"]),
            image_size=int(s["t_ft_size"]) or None,
            warmup_epochs=min(0.5, int(s["t_ft_epochs"])),
            seed=int(s["t_seed"]),
        ).validate()
    request.validate()
    return TrainChoice(request, cfg, str(s["t_label"]).strip(), chosen, fix_file)


def finetune_section(settings: state.Settings) -> Any:
    """The one-click fine-tuning preset and its time budget; the job to start when the button is pressed, else
    None."""
    from lib.jobs.commands import train_job
    from lib.pipeline.finetune_budget import FINETUNE_PRESETS
    from lib.pipeline.training import RunRequest

    recipe = FINETUNE_PRESETS["finetune"]
    with st.container(border=True):
        st.markdown("**Fine-tune at full scale** (a background job: close the tab and come back)")
        a, b = st.columns([1, 3])
        st.session_state.setdefault("t_budget", int(recipe.budget_minutes))
        budget = a.number_input("Time budget (minutes)", **widget("budget_minutes"), key="t_budget")
        b.caption(
            f"MobileNet v1 at {recipe.image_size} px with its first blocks frozen (their outputs cached once), the "
            "rest trained by SGD on a schedule fitted to the budget, checkpointed every few minutes, calibrated on "
            "held-out training images and scored with flip test-time augmentation. Measured accuracy per budget: "
            "docs/finetuning.md. The same as `python -m lib train --protocol finetune --budget-minutes N`."
        )
        off: dict = demo.off("Fine-tuning", help=demo.BACKGROUND)
        if not st.button("Fine-tune (finetune preset)", key="t_finetune_go", **off):
            return None
    backbone = settings.backbone if "mobilenet_v1" in settings.backbone else preset_backbone("mobilenet_v1_100_224")
    request = RunRequest(settings.source, backbone, HeadConfig(), protocol=recipe.name).validate()
    return train_job(request, budget_minutes=int(budget))
