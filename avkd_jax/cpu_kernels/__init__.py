"""CPU speed-ups for the students' layers, injected into `avkd_jax.models` by
`avkd_jax.conv_impl` (`model.conv_impl = "auto"` on one CPU device).

`Conv`: `nn.Conv` whose convolution is `dispatch.conv` (oneDNN where it runs, else XLA's
with a hand-written weight gradient). `max_pool`: the stem's 3×3/s2 max-pool
`[B, H, W, C]` → `[B, ceil(H/2), ceil(W/2), C]` with a hand-written gradient.
"""

import functools

import flax.linen as nn

from avkd_jax.cpu_kernels import dispatch, onednn, xla_grads

Conv = functools.partial(nn.Conv, conv_general_dilated=dispatch.conv)
max_pool = xla_grads.max_pool_3x3_s2

__all__ = ["Conv", "dispatch", "max_pool", "onednn", "xla_grads"]
