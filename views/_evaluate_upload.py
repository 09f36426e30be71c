"""Classify an uploaded image with the active run: decode safely, then backbone + head, top-5."""

from __future__ import annotations

import numpy as np
import streamlit as st

from lib.data.decode import resize_square
from lib.data.images import upscale
from lib.errors import UserFacingError
from lib.models.predict import predict_images
from lib.runs.registry import Run
from ui import cached, demo, state, widgets
from ui.text import md_escape, show_error


def upload_ui(settings: state.Settings, run: Run) -> None:
    """An uploader; shows the top-5 for an image and a clear message for anything else. In the demo the run's
    backbones run as float LiteRT models (no TensorFlow); a run without them offers no upload."""
    if demo.active():
        try:
            cached.lite_parts_ready(settings.layout, run.run_id)
        except UserFacingError as err:
            st.info(f"Uploads are off for this run: {err}")
            return
    got = widgets.uploaded_image("An image to classify", "ev_upload")
    if got is None:
        return
    name, img = got
    ds = cached.dataset_if_ready(run.manifest.source, settings.layout)
    # Training images were stored at the dataset's size (32x32 for CIFAR) and then resized: do the same to the upload.
    side = ds.image_shape[0] if ds is not None else 32
    small = resize_square(img, side)
    try:
        if demo.active():
            models = cached.lite_parts(settings.layout, run.run_id)
            probs = predict_images(models, run.head, small[None], run.manifest.part_keys(), run.manifest.tta)[0]
        elif run.manifest.finetuned:
            probs = np.asarray(cached.finetuned_model(settings.layout, run.run_id)(small[None]))[0]
        else:
            models = [
                cached.loaded_backbone(handle, settings.layout)
                for handle, _identity, _sizes in run.manifest.backbones()
            ]
            probs = predict_images(models, run.head, small[None], run.manifest.part_keys(), run.manifest.tta)[0]
    except UserFacingError as err:
        show_error(err)
        return
    a, b = st.columns([1, 2])
    a.image(upscale(small, 192), caption=f"{md_escape(name, 80)} as the model sees it ({side}x{side})")
    b.metric("Prediction", run.classes[int(probs.argmax())], f"{probs.max():.1%}", delta_color="off")
    widgets.top5(b, probs, run.classes)
