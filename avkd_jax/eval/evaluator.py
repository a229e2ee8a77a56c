"""The evaluation loop, in big_vision's style: a predict function makes every variant's maps
of a batch, and the protocols of `config.evals` (`registry`) accumulate them.

`evaluate_sets` runs it over every evaluation set with the object-guided variants whose
inputs are there; `evaluate_split_details` over one split.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import numpy as np
from absl import logging

from avkd_jax import input_pipeline, sharding, teacher_hints, terminal
from avkd_jax.datasets import hint_shards

# Imported for their registered protocols too.
from avkd_jax.eval import (  # noqa: F401
    annotations,
    diagnostics,
    extended,
    fusion,
    is3,
    negative_audio,
    protocol,
    registry,
    scene_negatives,
)
from avkd_jax.eval.fusion import OG, OG_DETR, PICTURE_VARIANTS, STUDENT

DEFAULT_PICTURES = 4
# The key of a set's results under which variants without their inputs are listed.
SKIPPED = "skipped"
CENTRE_PRIOR = "centre_prior"
EVERY_OBJECT = "every_object"


@dataclasses.dataclass
class SplitEval:
    """One evaluation set's outcome.

    Attributes:
      results: variant → summary (`summarize` plus diagnostics); `evaluate_sets` adds
        `SKIPPED` → {variant: reason} when some variant lacked its inputs.
      ids: the split's example ids, in file order.
      cious: variant → per-sample cIoU `[N]`, in `ids` order.
      pictures: one dict per picture id: 'id', 'image' (the model's uint8
        `[S, S, 3]` input), 'boxes' (ground truth `[K, 4]` normalised xyxy), 'gt'
        (`[224, 224]`) and 'maps' (variant → protocol map `[224, 224]`).
    """

    results: dict
    ids: list
    cious: dict
    pictures: list
    maps: dict | None = None


@dataclasses.dataclass
class EvalBatch:
    """One eval batch's real rows.

    Attributes:
      data: the batch as `input_pipeline.eval_batches` gives it (padded, `[B, ...]`).
      rows: indices `[n]` of its real rows (`mask`).
      ids: their example ids, `[n]` str.
      gts: their ground-truth maps, `[n]` of `[224, 224]`.
    """

    data: dict
    rows: np.ndarray
    ids: list
    gts: list


@dataclasses.dataclass
class Maps:
    """Every variant's maps of one batch's real rows.

    Attributes:
      maps: variant → protocol maps `[n, 224, 224]`, in the results' order.
      models: the model variants (their own grids are in `grids`).
      grids: variant → the maps `peak_object` reads where they are not `maps`: a model's
        own `[n, h, w]` grid, the centre prior before normalisation.
      swapped: variant → protocol maps `[n, 224, 224]` with the distractor's sound, for the
        variants that hear (empty unless a protocol wants the swap and a scene has one).
      grids_swapped: model variant → own grid `[n, h, w]` with the distractor's sound.
      negatives: variant → {'silence' | 'noise' | 'offscreen': S `[n, h, w]`}, the maps of
        each image with a negative sound (empty unless a protocol wants them); an
        audio-blind variant's are its own `similarity`.
      offscreen_ids: `[n]` the id of the clip whose sound is each row's 'offscreen' one
        (None where the batch had no clip of a class absent from the image).
      object_grid: the object-guided variants' object map on its own grid `[n, h, w]`
        (None without them).
      guided: (object-guided variant, the model variant it fuses), e.g. (OG, STUDENT).
    """

    maps: dict
    models: tuple = ()
    grids: dict = dataclasses.field(default_factory=dict)
    swapped: dict = dataclasses.field(default_factory=dict)
    grids_swapped: dict = dataclasses.field(default_factory=dict)
    negatives: dict = dataclasses.field(default_factory=dict)
    offscreen_ids: list = dataclasses.field(default_factory=list)
    object_grid: np.ndarray | None = None
    guided: tuple = ()

    def similarity(self, name):
        """`[n, h, w]` cosine similarities S: a model's own grid; for a map variant
        (values in [0, 1]) 2·map − 1, so that the protocols on S's fixed scale read it."""
        if name in self.models:
            return self.grids[name]
        return 2.0 * np.asarray(self.maps[name]) - 1.0

    def peak_map(self, name):
        """`[n, h, w]`: the map whose peak `peak_object` reads."""
        return self.grids.get(name, self.maps[name])

    def peak_swapped(self, name):
        """`[n, h, w]`: `peak_map` with the distractor's sound (the same map if audio-blind)."""
        return self.grids_swapped.get(name, self.swapped.get(name, self.peak_map(name)))


@functools.cache
def _sharded(fn, module, mesh, num_inputs):
    """`fn(module, variables, *inputs)` jitted once per (module, mesh): variables
    replicated, the `num_inputs` batch inputs split on `data`, the maps replicated."""
    replicated = sharding.replicated(mesh)
    data = sharding.batch_sharded(mesh)
    return jax.jit(
        functools.partial(fn, module),
        in_shardings=(replicated,) + (data,) * num_inputs,
        out_shardings=replicated,
    )


class Predictor:
    """The predict function: an `EvalBatch` → its `Maps` for every variant.

    Args:
      model, variants: the student and name → its `{'params', 'batch_stats'}`.
      mesh: the device mesh the batches are split over.
      alpha: OG-AVC's α (`config.og_alpha`).
      og_fusion: OG-AVC's rule (`config.og_fusion`, `fusion.fuse_og`).
      objects: with an 'AVC' variant, also OG-AVC.
      detr: with `objects`, also OG-AVC-DETR (its maps are in the batches).
      baselines: also the centre prior and (scenes with their objects) the every-object map.
      swap: also the maps with the distractor's sound, where a scene has one.
      negatives: also the maps with silence, noise and an off-screen clip's sound
        (scenes that list their objects).
    """

    def __init__(
        self,
        model,
        variants,
        mesh,
        alpha,
        objects=None,
        detr=None,
        baselines=False,
        swap=False,
        negatives=False,
        og_fusion="paper",
    ):
        self.variants, self.alpha, self.baselines, self.swap = variants, alpha, baselines, swap
        self.negatives = negatives
        fusion.check_og_rule(og_fusion)
        self.og_fusion = og_fusion
        self.data = sharding.batch_sharded(mesh)
        self.maps_fn = _sharded(fusion.model_maps, model, mesh, 2)
        self.guided = objects is not None and STUDENT in variants
        self.detr = detr if self.guided else None
        if self.guided:
            self.objects_fn = _sharded(fusion.object_maps, objects.trunk, mesh, 1)
            self.object_vars = jax.device_put(objects.variables, sharding.replicated(mesh))
        guided = [OG] * self.guided + [OG_DETR] * (self.detr is not None)
        # The student's rows first, then its object-guided variants, then the others.
        self.names = [n for n in variants if n == STUDENT] + guided
        self.names += [n for n in variants if n != STUDENT]
        self.names += [CENTRE_PRIOR, EVERY_OBJECT] * baselines
        self.centre = diagnostics.centre_prior_map()

    def hint_sources(self) -> list:
        """The hint sources the batches must carry."""
        return [self.detr] if self.detr is not None else []

    def __call__(self, batch: EvalBatch) -> Maps:
        data, rows = batch.data, batch.rows
        inputs = input_pipeline.replicated_global(
            {"image": data["image"], "audio": data["audio"]}, self.data
        )
        image, pcm = inputs["image"], inputs["audio"]
        has_objects = "objects" in data
        has_swap = self.swap and has_objects and (data["swap_index"][rows] >= 0).any()
        if has_swap:
            swap_pcm = input_pipeline.replicated_global({"a": data["swap_audio"]}, self.data)["a"]
        out = Maps({}, tuple(self.variants))
        maps = {}
        for name, variables in self.variants.items():
            raw = np.asarray(self.maps_fn(variables, image, pcm))[rows]
            maps[name], out.grids[name] = protocol.protocol_maps(raw), raw
            if has_swap:
                grid = np.asarray(self.maps_fn(variables, image, swap_pcm))[rows]
                out.grids_swapped[name] = grid
                out.swapped[name] = protocol.protocol_maps(grid)
        if self.guided:
            out.object_grid = np.asarray(self.objects_fn(self.object_vars, image))[rows]
            out.guided = (OG, STUDENT)
            obj = protocol.protocol_maps(out.object_grid)
            maps[OG] = fusion.fuse_og(maps[STUDENT], obj, self.alpha, self.og_fusion)
            if has_swap:
                out.swapped[OG] = fusion.fuse_og(
                    out.swapped[STUDENT], obj, self.alpha, self.og_fusion
                )
            if self.detr is not None:
                detr = fusion.detr_maps(data[hint_shards.VISUAL_HINT][rows], batch.ids)
                maps[OG_DETR] = fusion.fuse_og_detr(maps[STUDENT], obj, detr)
                if has_swap:
                    out.swapped[OG_DETR] = fusion.fuse_og_detr(out.swapped[STUDENT], obj, detr)
        if self.baselines:  # Audio-blind: the same map with either sound.
            n = len(rows)
            maps[CENTRE_PRIOR] = np.broadcast_to(
                protocol.normalize_map(self.centre), (n,) + self.centre.shape
            )
            out.grids[CENTRE_PRIOR] = np.broadcast_to(self.centre, (n,) + self.centre.shape)
            if has_objects:
                maps[EVERY_OBJECT] = np.stack(
                    [
                        protocol.normalize_map(
                            diagnostics.every_object_map(diagnostics.scene_objects(data, r)[0])
                        )
                        for r in rows
                    ]
                )
        out.maps = {name: maps[name] for name in self.names if name in maps}
        if self.negatives and has_objects:
            scene_negatives.add_negative_maps(
                self.maps_fn, self.variants, self.data, batch, image, out
            )
        return out


class Pictures:
    """The maps of the picture ids (`wanted`; empty: the first `DEFAULT_PICTURES`)."""

    def __init__(self, wanted=()):
        self.wanted = [str(i) for i in wanted or ()]
        self.pictures: list = []

    def update(self, batch: EvalBatch, maps: Maps) -> None:
        for k, (r, i) in enumerate(zip(batch.rows, batch.ids)):
            if i in self.wanted if self.wanted else len(self.pictures) < DEFAULT_PICTURES:
                self.pictures.append(
                    {
                        "id": i,
                        "image": batch.data["image"][r],
                        "boxes": protocol.pixel_boxes(batch.data, r),
                        "gt": batch.gts[k],
                        "maps": {n: maps.maps[n][k] for n in PICTURE_VARIANTS if n in maps.maps},
                    }
                )

    def result(self, ids, split) -> list:
        if self.wanted:
            absent = [i for i in self.wanted if i not in ids]
            if absent:
                logging.warning("picture_ids not in the %s split: %s", split, absent)
            self.pictures.sort(key=lambda p: self.wanted.index(p["id"]))
        return self.pictures


class KeptMaps:
    """The student's own grids of every sample, S/τ (`maps_file`'s values), by id."""

    def __init__(self, tau: float):
        self.scale = 1.0 / tau
        self.maps: dict = {}

    def update(self, batch: EvalBatch, maps: Maps) -> None:
        if STUDENT in maps.grids:
            for i, m in zip(batch.ids, maps.grids[STUDENT]):
                self.maps[i] = np.asarray(m, np.float32) * np.float32(self.scale)


class Evaluator:
    """Runs `predict_fn` over batches and feeds every protocol's accumulator.

    Args:
      predict_fn: `EvalBatch` → `Maps`.
      protocols: name → accumulator (`registry.build`).
      fmt: the ground-truth rule, 'flickr' or 'vggss'.
      pictures: a `Pictures` to feed too, or None.
      kept: a `KeptMaps` to feed too, or None.
      gt_fn: (batch, row, id) → `[224, 224]`, the ground truth instead of the batch's
        boxes under `fmt` (`annotations.first_box_truth`), or None.
    """

    def __init__(
        self,
        predict_fn,
        protocols: dict,
        fmt: str,
        pictures: Pictures | None = None,
        kept: KeptMaps | None = None,
        gt_fn=None,
    ):
        self.predict_fn, self.protocols, self.fmt = predict_fn, protocols, fmt
        self.pictures, self.kept = pictures, kept
        self.gt_fn = gt_fn or (lambda data, r, _: protocol.gt_map_of(data, r, self.fmt))
        self.ids: list = []

    def step(self, data: dict) -> None:
        """One padded batch: its real rows predicted and accumulated."""
        rows = np.flatnonzero(data["mask"])
        ids = [data["id"][r].decode() for r in rows]
        self.ids += ids
        batch = EvalBatch(data, rows, ids, [self.gt_fn(data, r, i) for r, i in zip(rows, ids)])
        maps = self.predict_fn(batch)
        for accumulator in self.protocols.values():
            accumulator.update(batch, maps)
        for collector in (self.pictures, self.kept):
            if collector is not None:
                collector.update(batch, maps)

    def run(self, batches, names) -> tuple[dict, dict]:
        """Every batch of `batches`; returns (variant → summary in `names` order, each
        protocol's keys in `config.evals` order; variant → per-sample cIoUs `[N]`)."""
        for data in batches:
            self.step(data)
        parts = [p.result() for p in self.protocols.values()]
        results = {}
        for name in names:
            summary = {}
            for part in parts:
                summary.update(part.get(name, {}))
            if summary:
                results[name] = summary
        per_sample = {}
        for p in self.protocols.values():
            per_sample.update(p.per_sample() if hasattr(p, "per_sample") else {})
        return results, {n: per_sample[n] for n in names if n in per_sample}


def evaluate_split(model, variants, builder, config, mesh, split=None, baselines=False, fmt=None):
    """`evaluate_split_details(...).results`: variant → summary."""
    return evaluate_split_details(
        model, variants, builder, config, mesh, split, baselines, fmt
    ).results


def evaluate_split_details(
    model,
    variants,
    builder,
    config,
    mesh,
    split=None,
    baselines=False,
    fmt=None,
    objects: fusion.ObjectModel | None = None,
    detr: teacher_hints.HintSource | None = None,
    picture_ids=(),
) -> SplitEval:
    """Evaluates models, their object-guided fusions and with `baselines` the two map
    baselines on `split` with the protocols of `config.evals`.

    Args:
      variants: name → `{'params', 'batch_stats'}` of `model`, e.g. {'AVC': trained,
        'untrained': fresh}.
      split: the builder's split (default `config.eval_split`).
      baselines: also score the centre prior and (scenes with every object known) the
        audio-blind every-object map.
      fmt: the ground-truth rule, 'flickr' or 'vggss' (default `config.eval_format`).
      objects: with an 'AVC' variant, also score OG-AVC (α = `config.og_alpha`).
      detr: with `objects`, also score OG-AVC-DETR from these hints of `split`.
      picture_ids: the ids to keep maps of for pictures (empty: the first 4).
    Returns:
      a `SplitEval`. A summary has, by protocol: 'lvs' `ciou`, `auc`, `mean_ciou`, `n`;
      'peaks' (model variants) `border_peak` and the `peak_hist` over the h×w grid;
      'synthetic' (scenes listing their objects) `peak_on_sounding` (% of scenes whose
      map peak is on the sounding object, `peak_object`) and `swap_score` (the fraction of
      scenes with a distractor whose map peak moves onto the distractor when the image is
      paired with the distractor's sound), `swap_n`, for the baselines too (audio-blind:
      their swap score is the chance level).
    """
    split = split or config.eval_split
    protocols = registry.build(config.evals, config)
    predict = Predictor(
        model,
        variants,
        mesh,
        config.og_alpha,
        objects,
        detr,
        baselines,
        swap=any(p.wants_swap for p in protocols.values()),
        negatives=any(getattr(p, "wants_negatives", False) for p in protocols.values()),
        og_fusion=config.get("og_fusion", "paper"),
    )
    kept = KeptMaps(config.tau) if config.get("save_maps") else None
    fmt = fmt or config.eval_format
    first = fmt == "vggss" and config.get("eval_first_box_only")
    evaluator = Evaluator(
        predict,
        protocols,
        fmt,
        Pictures(picture_ids),
        kept,
        annotations.first_box_truth(builder) if first else None,
    )
    batch_size = -(-config.eval_batch_size // jax.device_count()) * jax.device_count()
    batches = input_pipeline.eval_batches(
        builder, config, split, batch_size, predict.hint_sources()
    )
    results, cious = evaluator.run(batches, predict.names)
    for name, accumulator in protocols.items():
        if getattr(accumulator, "scores", None) == {}:  # The protocols of scenes with objects.
            logging.warning(
                "protocol %r of config.evals scored nothing on the %s split: it needs scenes "
                "that list their objects (the synthetic world); for real data, score saved "
                "maps with python -m avkd_jax.score (docs/scoring.md)",
                name,
                split,
            )
    pictures = evaluator.pictures.result(evaluator.ids, split)
    return SplitEval(results, evaluator.ids, cious, pictures, kept.maps if kept else None)


def evaluate_sets(model, variants, eval_sets, config, mesh, baselines=False) -> dict:
    """Every set of `eval_sets` (name → `datasets.EvalSet`) with every variant whose inputs
    are there: the object-guided ones when `config.object_npz` (and for OG-AVC-DETR the
    set's `config.og_detr_teacher` hints) can be had, else noted under `SKIPPED`.

    Returns:
      set name → `SplitEval`.
    """
    if not eval_sets:
        return {}
    objects, why_not = None, f"no {STUDENT} variant to guide"
    if STUDENT in variants:
        objects, why_not = fusion.load_object_model(config, next(iter(eval_sets.values())).builder)
    out = {}
    for name, s in eval_sets.items():
        skipped, detr = {}, None
        if objects is None:
            skipped = {OG: why_not, OG_DETR: why_not}
        else:
            detr, why = fusion.detr_source(config, s.builder, s.split)
            if why:
                skipped[OG_DETR] = why
        for variant, why in skipped.items():
            # The results table lists it under "Not evaluated".
            logging.info("%s on %s skipped: %s", variant, name, why, extra=terminal.FILE_ONLY)
        result = evaluate_split_details(
            model,
            variants,
            s.builder,
            config,
            mesh,
            s.split,
            baselines,
            s.fmt,
            objects,
            detr,
            tuple(config.get("picture_ids") or ()),
        )
        if skipped:
            result.results[SKIPPED] = skipped
        out[name] = result
    return out
