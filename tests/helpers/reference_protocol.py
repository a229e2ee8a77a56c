"""The reference test code's ground truth (LVS / EZ-VSL), written out once for the tests
that check ours against it."""

import numpy as np


def vggss_gt(boxes):
    """VGG-SS: every box clipped to [0, 1], ×224, int, painted."""
    gt = np.zeros([224, 224])
    for box in boxes:
        xmin, ymin, xmax, ymax = (np.clip(np.array(box), 0, 1) * 224).astype(int)
        gt[ymin:ymax, xmin:xmax] = 1
    return gt
