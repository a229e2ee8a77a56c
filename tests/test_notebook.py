"""notebooks/colab_evaluation.ipynb runs end to end, headless, on the synthetic checkpoint."""

import json
import os

import nbformat
import pytest
from helpers.paths import REPO
from nbclient import NotebookClient

NOTEBOOK = REPO / "notebooks" / "colab_evaluation.ipynb"


@pytest.mark.slow
def test_notebook_runs_every_cell(trained_run, tmp_path, monkeypatch):
    monkeypatch.setenv("AVKD_WORKDIR", trained_run)
    monkeypatch.setenv("AVKD_OUT", str(tmp_path / "localize_out"))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    # Any failing cell raises CellExecutionError, naming the cell and its traceback.
    NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(REPO)}}
    ).execute()

    outputs = {
        i: "".join(o.get("text", "") for o in cell.get("outputs", []))
        for i, cell in enumerate(nb.cells)
        if cell.cell_type == "code"
    }
    assert "avkd_jax is installed" in outputs[1]  # The install cell skipped pip.
    # The evaluation printed every variant, and re-wrote the run's results.
    with open(os.path.join(trained_run, "results.json")) as f:
        results = json.load(f)["sets"]["synthetic_test"]
    assert {"AVC", "OG-AVC", "OG-AVC-DETR"} <= set(results)
    assert "'OG-AVC-DETR'" in outputs[3]
    # The table and the three pictures were displayed.
    kinds = [
        o.get("output_type") + ":" + ",".join(sorted(o.get("data", {})))
        for cell in nb.cells
        for o in cell.get("outputs", [])
    ]
    assert sum("text/markdown" in k for k in kinds) == 1
    assert sum("image/png" in k for k in kinds) == 4  # 3 pictures + the localized clip
    assert (tmp_path / "localize_out" / "localized.png").exists()
    assert (tmp_path / "localize_out" / "localized.npy").exists()
