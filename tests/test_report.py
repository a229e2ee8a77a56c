"""The data report: a dry scan of the raw disks of test_real_datasets, and its command line."""

import os
import subprocess
import sys

from helpers.real_disks import flickr_config, vggsound_config

from avkd_jax.datasets import report

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def ids(rows):
    return sorted({r[0] for r in rows})


def test_flickr_report_counts_every_case(flickr_root, tmp_path):  # noqa: F811
    config = flickr_config(flickr_root, tmp_path / "tfds")
    out = tmp_path / "report"
    numbers, text = report.build_report(config, str(out), decode=True)
    train, test = numbers["splits"]["train"], numbers["splits"]["test"]
    # By construction of the disk: 9 listed, 2001 is a test id, 1007 has no audio, the
    # corrupt JPEG (1005), empty wav (1006) and 0-sample wav (1008) are found but fail.
    assert (train["listed"], train["left_out"], train["to_build"]) == (9, ["2001"], 8)
    assert train["found"] == 7 and ids(train["missing"]) == ["1007"]
    assert ids(train["failed"]) == ["1005", "1006", "1008"]
    assert (test["listed"], test["found"]) == (6, 4)
    # 2004: its XML; 2006: frame, audio and XML.
    assert ids(test["missing"]) == ["2004", "2006"] and len(test["missing"]) == 4
    assert ids(test["failed"]) == ["2003"] and ids(test["boxes_dropped"]) == ["2005"]
    assert numbers["overlaps"]["flickr_test"]["overlap"] == ["2001"]
    assert (out / "missing-train.tsv").read_text().splitlines()[1].startswith("1007\t")
    assert (out / "overlap-flickr_test.txt").read_text() == "2001\n"
    failed = (out / "failed-train.tsv").read_text()
    assert "1006\t" in failed and "file is empty (0 bytes)" in failed
    assert "flickr_test: 1 of its 6 ids are in the train list" in text
    assert "1 are test ids, left out of training" in text
    assert "Not prepared yet" in text


def test_report_without_decoding_and_of_a_prepared_dataset(flickr_root, flickr_built, tmp_path):  # noqa: F811
    config, builder = flickr_built
    numbers, text = report.build_report(config, str(tmp_path), decode=False)
    assert numbers["splits"]["train"]["failed"] == [] and numbers["splits"]["train"]["found"] == 7
    assert "not decoded" in text
    # The build's own record of what it skipped.
    skips = numbers["prepared_skips"]
    assert sorted(r[0] for r in skips["train"] if r[2] == "skipped") == [
        "1005",
        "1006",
        "1007",
        "1008",
    ]
    assert f"Prepared dataset {builder.data_dir}" in text
    assert "train: 4 clips skipped, 0 boxes dropped" in text


def test_vggsound_report_and_cross_set_overlap(vggsound_root, flickr_root, tmp_path):  # noqa: F811
    config = vggsound_config(vggsound_root, tmp_path / "tfds")
    config.eval_sets = ("vggss_test", "flickr_test")
    config.eval_manual_dirs.flickr_test = str(flickr_root)
    numbers, text = report.build_report(config, str(tmp_path / "r"), decode=True)
    test = numbers["splits"]["test"]
    failed = {r[0]: r[2] for r in test["failed"]}
    assert failed == {
        "fff_000006": "entry #3: box [0.1, 0.2, 0.3] is not a list of 4 numbers",
        "ggg_000007": "no entry for ggg_000007",
    }
    assert ids(test["boxes_dropped"]) == ["ddd_000004", "eee_000005"]
    assert len(test["notes"]) == 2
    # The Flickr set is scanned from its own root, and its overlap with the VGGSound list
    # (different id spaces) is empty.
    assert numbers["splits"]["flickr_test"]["found"] == 4
    assert numbers["overlaps"]["vggss_test"]["overlap"] == ["ccc_000003"]
    assert numbers["overlaps"]["flickr_test"]["overlap"] == []
    assert "flickr_test: 0 of its 6 ids are in the train list" in text


def test_command_line(flickr_root, tmp_path):  # noqa: F811
    out = tmp_path / "out"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "avkd_jax.datasets.report",
            "--config=configs/flickr10k.py",
            f"--config.manual_dir={flickr_root}",
            "--config.dataset_kwargs.train_list=train.txt",
            "--config.dataset_kwargs.test_list=test.csv",
            "--decode=false",
            f"--output_dir={out}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "train: " in proc.stdout and "7 of 8 have their files" in proc.stdout
    assert "flickr_test: 1 of its 6 ids are in the train list" in proc.stdout
    assert (out / "missing-test.tsv").exists()
