"""Evaluation protocols by name, chosen by `config.evals` (as big_vision's `config.evals`).

A protocol is an accumulator class registered here with `@register("name")`:
`cls(config)`, `update(batch, maps)` once per batch (`evaluator.EvalBatch`,
`evaluator.Maps`) and `result()` → {variant: {key: value}}; it may also give
`per_sample()` → {variant: [N]} (written to cious.json) and set `wants_swap = True` to have
the maps of the synthetic world's swapped audio computed.
"""

from __future__ import annotations

_PROTOCOLS: dict = {}


def register(name: str):
    """Class decorator: registers an accumulator class as protocol `name`."""

    def wrap(cls):
        if name in _PROTOCOLS and _PROTOCOLS[name] is not cls:
            raise ValueError(f"evaluation protocol {name!r} is registered twice")
        _PROTOCOLS[name] = cls
        return cls

    return wrap


def known() -> list:
    """The registered protocol names, sorted."""
    return sorted(_PROTOCOLS)


def get(name: str, field: str = "config.evals"):
    """The class registered as `name`; an unknown name raises, naming `field`."""
    if name not in _PROTOCOLS:
        raise ValueError(
            f"{field}: unknown evaluation protocol {name!r}; known: {', '.join(known())}"
        )
    return _PROTOCOLS[name]


def build(names, config, field: str = "config.evals") -> dict:
    """name → a fresh accumulator of each protocol of `names`, in their order."""
    if isinstance(names, str):
        raise ValueError(f"{field} must be a list of protocol names, got the string {names!r}")
    return {name: get(name, field)(config) for name in names}
