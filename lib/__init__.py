"""Transfer-learning engine behind the dashboard: data, backbones, features, heads, runs.

Everything here takes arrays, paths and plain values and never imports Streamlit;
TensorFlow is imported lazily inside the functions that need it.

    from lib.data import sources
    from lib.runtimes import backbones
    from lib.pipeline import features
    ds = datasets.load_dataset("../shared/data/cifar10-jpeg.tar.gz", CacheLayout("cache"))
    bb = backbones.resolve_backbone("../shared/models/mobilenet_v1_100_224_feature_vector")
    feats = features.ensure_features(ds, "test", bb, "cache", image_size=128)
"""
