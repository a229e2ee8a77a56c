"""avkd_jax.tables: the paper's mean ± std tables from repeated runs (benchmarks/repeat.py,
benchmarks/ablation.py)."""

import numpy as np

from avkd_jax import tables


def test_tables_are_mean_and_sample_std_over_seeds():
    cious = [70.0, 80.0, 84.0]
    aucs = [55.5, 60.25, 61.0]
    runs = []
    for k in range(3):
        sets = {
            "flickr_test": {
                "AVC": {"ciou": cious[k], "auc": aucs[k]},
                "OG-AVC": {"ciou": cious[k] + 5, "auc": aucs[k] + 1},
                "untrained": {"ciou": 1.0, "auc": 2.0},
                "skipped": {"OG-AVC-DETR": "no detr hints"},
            },
            "vggss_test": {"AVC": {"ciou": 30.0 + k, "auc": 35.0}},
        }
        if k == 2:
            del sets["vggss_test"]  # e.g. a seed evaluated on one set only
        runs.append(sets)
    text = tables.paper_tables(runs, "flickr10k")
    ciou = f"{np.mean(cious):.1f} ± {np.std(cious, ddof=1):.1f}"  # 78.0 ± 7.2
    auc = f"{np.mean(aucs):.1f} ± {np.std(aucs, ddof=1):.1f}"
    assert f"| AVC | flickr10k | flickr_test | {ciou} | {auc} | 3/3 |" in text
    assert "| AVC | flickr10k | vggss_test | 30.5 ± 0.7 | 35.0 ± 0.0 | 2/3 |" in text
    og = f"{np.mean(cious) + 5:.1f} ± {np.std(cious, ddof=1):.1f}"
    assert f"| OG-AVC | flickr10k | flickr_test | {og} |" in text
    assert "- OG-AVC-DETR on flickr_test skipped: no detr hints" in text
    assert "untrained" not in text
    table1, table3 = text.split("### Table 3")
    assert "OG-AVC" not in table1 and "| AVC |" not in table3


def test_ablation_turns_teachers_off_and_tabulates_each_variant():
    args = {slug: tables.ablation_args(a, v) for slug, _, a, v in tables.ABLATION_VARIANTS}
    assert args == {
        "base": ["--config.alpha_audio=0", "--config.alpha_visual=0"],
        "audio": ["--config.alpha_visual=0"],
        "visual": ["--config.alpha_audio=0"],
        "both": [],
    }
    swaps = [0.5, 0.75, 0.8125]
    rows = {
        "both teachers": [
            {"ciou": 60.0 + k, "auc": 50.0, "mean_ciou": 40.0, "peak_on_sounding": 80.0 + 2 * k}
            | {"swap_score": s}
            for k, s in enumerate(swaps)
        ],
        # A summary without the synthetic world's diagnostics (real data): dashes.
        "base (no teacher)": [{"ciou": 10.0, "auc": 20.0, "mean_ciou": 30.0}],
    }
    text = tables.ablation_table(rows, "caption")
    swap = f"{np.mean(swaps):.3f} ± {np.std(swaps, ddof=1):.3f}"  # 0.688 ± 0.165
    assert (
        f"| both teachers | 61.0 ± 1.0 | 50.0 ± 0.0 | 40.0 ± 0.0 | 82.0 ± 2.0 | {swap} | 3 |"
        in text
    )
    assert "| base (no teacher) | 10.0 ± 0.0 | 20.0 ± 0.0 | 30.0 ± 0.0 | – | – | 1 |" in text
    assert (
        "| variant | cIoU@0.5 | AUC | mean cIoU | peak on sounding % | audio swap | runs |" in text
    )
