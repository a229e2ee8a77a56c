"""The bad-input cases of dataset builds (bad clips skipped and reported)."""

from bad_inputs.cases import (
    BOX,
    SKIP,
    Case,
    build_split,
    cut,
    flickr_xml,
    raw_clip,
    vggss_build,
    vggss_json,
)


def _skip_corrupt_frame(ctx):
    raw_clip(ctx, "1001")
    bad = raw_clip(ctx, "1002")["image"]
    cut(bad, keep=300)
    return build_split(ctx, "train", ["1001", "1002"]), f"1002\t{bad}\tskipped\tcannot decode image"


def _skip_missing_sound(ctx):
    raw_clip(ctx, "1001"), raw_clip(ctx, "1002", audio=False)
    return build_split(ctx, "train", ["1001", "1002"]), "1002\t" + str(
        ctx.tmp / "raw" / "audio" / "1002.wav"
    ) + "\tskipped\tmissing: no audio/1002{.wav,.flac}"


def _skip_no_annotation(ctx):
    raw_clip(ctx, "2001"), raw_clip(ctx, "2002")
    good = BOX.format("<xmin>1</xmin><ymin>2</ymin><xmax>30</xmax><ymax>40</ymax>")
    flickr_xml(ctx, f"<annotation><object>{good}</object></annotation>")
    ann = str(ctx.tmp / "raw" / "Annotations")
    run = build_split(ctx, "test", ["2001", "2002"], "flickr", ann)
    return run, f"2002\t{ann}/2002.xml\tskipped\tmissing: annotation file does not exist"


def _skip_malformed_entry(ctx):
    bad = {"file": "bad_000002", "bbox": [[0.1, 0.2, 0.3]]}
    run, path = vggss_build(ctx, bad)
    return run, f"bad_000002\t{path}\tskipped\tentry #1: box [0.1, 0.2, 0.3] is not a list of 4"


def _skip_no_entry(ctx):
    run, path = vggss_build(ctx, None)
    return run, f"bad_000002\t{path}\tskipped\tno entry for bad_000002"


def _drop_corrupt_box(ctx):
    bad = {"file": "bad_000002", "bbox": [[0.3, 0.4, 0.7, -2.88e16], [0.1, 0.1, 0.4, 0.4]]}
    run, path = vggss_build(ctx, bad)
    return run, f"bad_000002\t{path}\tbox dropped\tbox #1 [0.3, 0.4, 0.7, -2.88e+16]"


def _drop_nan_box(ctx):
    run, path = vggss_build(ctx, None)
    with open(path) as f:
        text = f.read()[:-1] + ', {"file": "bad_000002", "bbox": [[0.1, NaN, 0.5, 0.5]]}]'
    vggss_json(ctx, text)
    return run, f"bad_000002\t{path}\tbox dropped\tbox #1 [0.1, nan, 0.5, 0.5] has a corrupt"


def _note_entry_without_file(ctx):
    run, path = vggss_build(ctx, {"class": "x", "bbox": [[0, 0, 1, 1]]})
    return run, f"\t{path} entry #1\tnoted\tentry #1 has no 'file' name"


def _all_clips_bad(ctx):
    for i in ("1001", "1002"):
        cut(raw_clip(ctx, i)["audio"], keep=20)
    return build_split(ctx, "train", ["1001", "1002"]), "raw/train: none of the 2 listed clips"


BUILD_CASES = [
    Case(
        "build-corrupt-frame",
        "raw clip",
        "one clip's frame is a truncated JPEG",
        SKIP,
        _skip_corrupt_frame,
        "The clip is skipped; its row in skipped-train.tsv names the file and the reason.",
    ),
    Case(
        "build-missing-sound",
        "raw clip",
        "a clip with a frame but no audio/<id>.wav|flac and no video",
        SKIP,
        _skip_missing_sound,
        "Skipped with `missing: no audio/<id>{.wav,.flac}, no video/<id>{...}`.",
    ),
    Case(
        "build-missing-annotation",
        "raw clip",
        "a Flickr test clip without Annotations/<id>.xml",
        SKIP,
        _skip_no_annotation,
        "Skipped with `missing: annotation file does not exist`.",
    ),
    Case(
        "build-malformed-json-entry",
        "annotation",
        "a vggss.json entry whose box has 3 numbers",
        SKIP,
        _skip_malformed_entry,
        "That clip is skipped (`entry #k: box ... is not a list of 4 numbers`), the rest read.",
    ),
    Case(
        "build-no-json-entry",
        "annotation",
        "a listed VGG-SS test id without a vggss.json entry",
        SKIP,
        _skip_no_entry,
        "Skipped with `no entry for <id>`.",
    ),
    Case(
        "build-corrupt-box",
        "annotation",
        "a box with a coordinate of -2.88e16 (as 12 boxes of the public vggss.json)",
        SKIP,
        _drop_corrupt_box,
        "That box is dropped (`box dropped` row), the clip kept: the reference's maps exactly.",
    ),
    Case(
        "build-nan-box",
        "annotation",
        "a box with a NaN coordinate",
        SKIP,
        _drop_nan_box,
        "That box is dropped (`box dropped` row).",
    ),
    Case(
        "build-entry-without-file",
        "annotation",
        "a vggss.json entry without a `file` name",
        SKIP,
        _note_entry_without_file,
        "A `noted` row naming the entry; no clip is affected.",
    ),
    Case(
        "build-all-clips-bad",
        "raw clip",
        "not one clip of a split can be read",
        ValueError,
        _all_clips_bad,
        "ValueError with the first reasons: check the layout with python -m avkd_jax.datasets.report.",
    ),
]
