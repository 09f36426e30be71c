"""The Speed vs accuracy page's logic without TensorFlow: merging stored results, what is missing from a grid,
the int8 loss tables, the Pareto front and "pick for me"."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from lib.analysis import benchmark as bm
from lib.analysis import benchmark_results as br


def _row(backbone: str, size: int, runtime: str, ips: float, best: float, p50: float = 1.0) -> dict:
    return {
        "backbone": backbone,
        "backbone_name": Path(backbone).name,
        "image_size": size,
        "runtime": runtime,
        "images_per_second": ips,
        "latency_ms_p50": p50,
        "best_accuracy": best,
        "linear_accuracy": best - 0.05,
    }


def _models(tmp_path: Path) -> tuple[str, str]:
    saved = tmp_path / "net_128"
    saved.mkdir()
    (saved / "saved_model.pb").write_bytes(b"x")
    lite = tmp_path / "q_224.tflite"
    lite.write_bytes(b"x")
    return str(saved), str(lite)


def test_missing_configurations_follow_what_is_measured(tmp_path: Path) -> None:
    saved, lite = _models(tmp_path)
    grid = bm.grid_configurations([saved, lite], [96, 128], ["tf", "litert", "litert-int8"])
    assert len(grid) == 2 * 3 + 1  # a .tflite file once, at its own size
    assert [r for _, _, r in grid[:3]] == [
        "litert",
        "tf",
        "litert-int8",
    ]  # the faster float runtime first: tf reuses its heads
    rows = [_row(saved, 96, "tf", 10, 0.5), _row(saved, 96, "litert", 20, 0.5), {**_row(lite, 224, "tflite", 50, 0.4)}]
    missing = br.missing_configurations(grid, rows)
    assert (saved, 96, "litert-int8") in missing and (saved, 128, "tf") in missing
    assert (saved, 96, "tf") not in missing and all(b != lite for b, _, _ in missing)
    assert len(missing) == 4


def test_results_merge_per_machine_and_subset_newest_row_wins() -> None:
    machine = {"cpu": "Xeon", "cores": 2}
    newer = {
        "dataset": "d",
        "limit": 50,
        "machine": machine,
        "benchmark_version": 2,
        "rows": [_row("a", 96, "tf", 11, 0.6)],
        "path": "n",
    }
    older = {
        "dataset": "d",
        "limit": 50,
        "machine": machine,
        "benchmark_version": 2,
        "rows": [_row("a", 96, "tf", 10, 0.5), _row("a", 128, "tf", 5, 0.7)],
        "path": "o",
    }
    other_machine = {**older, "machine": {"cpu": "EPYC", "cores": 64}, "path": "e"}
    other_subset = {**older, "limit": None, "path": "f"}
    groups = br.merged_results([newer, older, other_machine, other_subset])
    assert len(groups) == 3  # never mixes machines or accuracy subsets
    first = groups[0]
    assert first["files"] == ["n", "o"]
    by = {(r["image_size"]): r for r in first["rows"]}
    assert len(first["rows"]) == 2 and by[96]["images_per_second"] == 11  # the newer measurement of (a, 96, tf)


def test_int8_loss_against_the_faster_float_runtime() -> None:
    rows = [
        _row("a", 128, "tf", 100, 0.80),
        _row("a", 128, "litert", 180, 0.80),
        _row("a", 128, "litert-int8", 400, 0.77),
        _row("b", 96, "tf", 5, 0.5),
    ]
    (loss,) = br.int8_loss(rows)
    assert (
        loss["float_runtime"] == "litert" and loss["loss_points"] == 3.0 and loss["int8_speedup"] == round(400 / 180, 2)
    )


def test_int8_loss_from_full_runs_pairs_only_like_for_like() -> None:
    def run(
        rid: str,
        runtime: str,
        acc: float,
        limit: int | None = None,
        head: str = "mlp",
        created: str = "1",
        extra: list | None = None,
        relabel: dict | None = None,
    ) -> SimpleNamespace:
        return SimpleNamespace(
            run_id=rid,
            runtime=runtime,
            limit=limit,
            finetuned=False,
            dataset_fingerprint="d",
            backbone_identity="b",
            excluded={},
            relabel=relabel,
            backbone_name="b",
            image_sizes=[128],
            head=head,
            train_views=["original", "flip"],
            tta=True,
            protocol="best",
            created=created,
            metrics=SimpleNamespace(test_accuracy=acc, test_images=10_000),
            extra_backbones=extra or [],
        )

    two = [{"backbone": "c", "backbone_name": "c", "backbone_identity": "c", "image_sizes": [224]}]
    runs = [
        run("q", "litert-int8", 0.8407),
        run("f", "tf", 0.8550),
        run("sub", "tf", 0.99, limit=10),
        run("lin", "tf", 0.9, head="linear"),
        run("two", "tf", 0.95, created="2", extra=two),
        run("fixed", "tf", 0.8554, created="3", relabel={"name": "fixes"}),
    ]
    (pair,) = br.int8_loss_from_runs(runs)  # the newer run on fixed labels is not the float twin
    assert pair["float_run"] == "f" and pair["int8_run"] == "q" and pair["loss_points"] == 1.43


def test_pareto_front_and_pick_within_budget() -> None:
    points = [(100.0, 0.80), (50.0, 0.85), (60.0, 0.70), (200.0, 0.60)]
    assert br.pareto_front(points) == [3, 0, 1]  # (60, 0.70) is beaten by (100, 0.80)
    rows = [_row("a", 96, "tf", 100, 0.8, p50=2.0), _row("b", 128, "tf", 50, 0.85, p50=8.0)]
    assert br.pick_within_budget(rows, 5.0)["backbone"] == "a"
    assert br.pick_within_budget(rows, 10.0)["backbone"] == "b"
    assert br.pick_within_budget(rows, 1.0) is None


def test_fast_choice_is_the_fastest_int8_within_half_a_point() -> None:
    full = [
        {"backbone": "a", "image_sizes": "128", "int8_runtime": "litert-int8", "loss_points": 1.43},
        {"backbone": "a", "image_sizes": "128", "int8_runtime": "litert-mixed", "loss_points": 0.35},
        {"backbone": "q", "image_sizes": "128", "int8_runtime": "litert-int8", "loss_points": 0.2},
    ]
    subset = [
        {"backbone": "a", "image_size": 128, "int8_runtime": "litert-int8", "int8_speedup": 3.3},
        {"backbone": "a", "image_size": 128, "int8_runtime": "litert-mixed", "int8_speedup": 1.85},
        {"backbone": "q", "image_size": 128, "int8_runtime": "litert-int8", "int8_speedup": 3.1},
    ]
    pick = br.fast_choice(full, subset)
    assert pick is not None and (pick["backbone"], pick["int8_runtime"], pick["int8_speedup"]) == (
        "q",
        "litert-int8",
        3.1,
    )
    assert br.fast_choice(full[:1], subset) is None  # 1.43 points is not "without the loss"
    assert br.fast_choice(full, []) is None  # nothing measured on this machine
