"""Do a hosting bundle's neighbours agree with exact search? Prints, for random queries, how many of the exact k
nearest (cosine on the real features of the full cache) the hosted demo finds: by its reduced features alone, and
re-ranked by its LiteRT backbone on the decoded thumbnails (what the demo does).

    python bench/hosting_neighbours.py --cache-dir cache --hosted /tmp/hc --queries 300

Two kinds of query: a dataset image (the map's neighbours: the demo embeds the query's thumbnail too) and an upload
(the query vector is the image's real features; the image itself is left out of the results).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lib.store.layout import CacheLayout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--cache-dir", type=CacheLayout, required=True, help="the full cache the bundle was made from (real features)"
    )
    ap.add_argument("--hosted", type=CacheLayout, required=True, help="a cache a hosting bundle was installed into")
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    from lib.data.sources import load_dataset
    from lib.models.specs import resolve_backbone, set_aliases
    from lib.pipeline.features import cached_feature_result
    from lib.pipeline.neighbours import nearest_to
    from lib.pipeline.reduced import CANDIDATES, nearest_search
    from lib.process import machine_info
    from lib.runtimes.lite_parts import lite_backbone
    from lib.store.installed import backbone_stand_ins, installed_bundle

    info = installed_bundle(args.hosted)
    if info is None or "hosting" not in info:
        sys.exit(f"{args.hosted} has no hosting bundle installed")
    key = info["hosting"]["reduced_features"][0]
    manifest = json.loads(args.hosted.feature_files(key)[1].read_text())
    full_ds = load_dataset(f"cache:{manifest['dataset']}", args.cache_dir)
    host_ds = load_dataset(f"cache:{manifest['dataset']}", args.hosted)
    spec_full = resolve_backbone(manifest["backbone"])
    set_aliases({}, backbone_stand_ins(args.hosted))
    spec_host = resolve_backbone(manifest["backbone"])
    size, runtime = int(manifest["image_size"]), manifest["runtime"].split(":")[0]
    real = {
        s: cached_feature_result(full_ds, s, spec_full, size, "original", None, args.cache_dir, runtime)
        for s in full_ds.splits
    }
    hosted = {
        s: cached_feature_result(host_ds, s, spec_host, size, "original", None, args.hosted, runtime, reduced_ok=True)
        for s in host_ds.splits
    }
    if any(r is None for r in real.values()) or any(r is None for r in hosted.values()):
        sys.exit("features missing in one of the caches")
    model = lite_backbone(manifest["backbone"], spec_host.identity(), spec_host.name, [size], host_ds, args.hosted)
    embed = lambda images: model.embed(images, size)  # noqa: E731
    images = {s: host_ds.images(s) for s in host_ds.splits}
    feats = {s: r.features for s, r in real.items()}  # type: ignore[union-attr]
    rng = np.random.default_rng(args.seed)
    splits = list(host_ds.splits)
    sizes = [host_ds.size(s) for s in splits]
    picks = [
        (splits[j], int(rng.integers(sizes[j])))
        for j in rng.choice(len(splits), args.queries, p=np.asarray(sizes) / sum(sizes))
    ]
    cpu = machine_info()
    print(
        f"CPU: {cpu.get('cpu')}, {cpu.get('cores')} cores; {len(picks)} queries, k={args.k}, {CANDIDATES} candidates "
        f"re-ranked; features {key}"
    )
    for kind in ("dataset image", "upload"):
        for mode in ("reduced only", "re-ranked"):
            recall, same, t0 = [], [], time.perf_counter()
            for split, i in picks:
                exact = {(s, j) for s, j, _ in nearest_to(feats, np.asarray(feats[split][i]), args.k, skip=(split, i))}
                query = None if kind == "dataset image" else np.asarray(feats[split][i], np.float32)
                hits, _ = nearest_search(
                    hosted, query, args.k, skip=(split, i), embed=embed if mode == "re-ranked" else None, images=images
                )
                got = {(s, j) for s, j, _ in hits}
                recall.append(len(got & exact) / args.k)
                same.append(got == exact)
            ms = 1000 * (time.perf_counter() - t0) / len(picks)
            print(
                f"{kind:14s} {mode:13s} recall@{args.k} {np.mean(recall):.3f}  all {args.k} equal on "
                f"{np.mean(same):.1%} of queries  {ms:.0f} ms/query"
            )


if __name__ == "__main__":
    main()
