"""Transfer-learning engine behind the dashboard: data, backbones, features, heads, runs.

Everything here takes arrays, paths, plain values and one cache layout, and never imports Streamlit;
TensorFlow is imported lazily inside the functions that need it.

    from lib.data import sources
    from lib.pipeline import features
    from lib.runtimes import backbones
    from lib.store.layout import CacheLayout
    layout = CacheLayout("cache")                         # built once by the entry point, passed down
    ds = sources.load_dataset("../shared/data/cifar10-jpeg.tar.gz", layout)
    bb = backbones.resolve_backbone("../shared/models/mobilenet_v1_100_224_feature_vector")
    feats = features.ensure_features(ds, "test", bb, layout, image_size=128)
"""
