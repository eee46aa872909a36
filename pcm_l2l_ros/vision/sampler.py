"""N-way K-shot task sampler for Omniglot.

Fixes the official code's sampling bugs: classes are drawn **without replacement**
and every query image is a distinct drawing (no duplicated query slots, no overlap with the support set).
Optionally each character in each of 4 rotations (0, 90, 180, 270 degrees) is its own class (meta-training
augmentation). Support and query sets are shuffled so labels are interleaved. All randomness comes from
the ``numpy.random.Generator`` passed in.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Task:
    """One N-way K-shot task; images float32 28 x 28, ink = 1; labels int64 in [0, ways)."""

    support_x: np.ndarray  # (ways*shots, 28, 28)
    support_y: np.ndarray  # (ways*shots,)
    query_x: np.ndarray  # (ways*queries, 28, 28)
    query_y: np.ndarray  # (ways*queries,)
    classes: np.ndarray  # (ways, 2): (character index, rotation k) of each label


@dataclass
class TaskBatch:
    """A meta-batch of tasks with the same shape, stacked on axis 0."""

    support_x: np.ndarray  # (T, ways*shots, 28, 28)
    support_y: np.ndarray  # (T, ways*shots)
    query_x: np.ndarray
    query_y: np.ndarray


class TaskSampler:
    """Draw tasks from ``images`` (n_chars, n_drawers, H, W).

    ways, shots, queries: classes per task, support and query images per class (shots + queries must not
    exceed the number of drawers, 20). rotations: treat the 4 rotations of each character as classes.
    """

    def __init__(self, images: np.ndarray, ways: int, shots: int, queries: int, rotations: bool = False):
        images = np.asarray(images, dtype=np.float32)
        n_chars, n_drawers = images.shape[:2]
        n_classes = n_chars * (4 if rotations else 1)
        if ways > n_classes:
            raise ValueError(f"{ways} ways but only {n_classes} classes")
        if shots + queries > n_drawers:
            raise ValueError(f"shots + queries = {shots + queries} > {n_drawers} drawings per class")
        self.images, self.ways, self.shots, self.queries = images, ways, shots, queries
        self.rotations = rotations
        self.n_classes = n_classes

    def sample(self, rng: np.random.Generator) -> Task:
        n_chars, n_drawers = self.images.shape[:2]
        cls = rng.choice(self.n_classes, size=self.ways, replace=False)
        chars, rots = cls % n_chars, cls // n_chars
        k = self.shots + self.queries
        sx = np.empty((self.ways, self.shots) + self.images.shape[2:], np.float32)
        qx = np.empty((self.ways, self.queries) + self.images.shape[2:], np.float32)
        for i, (c, r) in enumerate(zip(chars, rots, strict=True)):
            drawers = rng.choice(n_drawers, size=k, replace=False)
            imgs = self.images[c, drawers]
            if r:
                imgs = np.rot90(imgs, k=int(r), axes=(1, 2))
            sx[i], qx[i] = imgs[: self.shots], imgs[self.shots:]
        sy = np.repeat(np.arange(self.ways), self.shots)
        qy = np.repeat(np.arange(self.ways), self.queries)
        ps, pq = rng.permutation(sy.size), rng.permutation(qy.size)
        return Task(sx.reshape((-1,) + sx.shape[2:])[ps], sy[ps], qx.reshape((-1,) + qx.shape[2:])[pq], qy[pq],
                    np.stack([chars, rots], axis=1))

    def sample_batch(self, rng: np.random.Generator, n_tasks: int) -> TaskBatch:
        tasks = [self.sample(rng) for _ in range(n_tasks)]
        return TaskBatch(*(np.stack([getattr(t, f) for t in tasks])
                           for f in ("support_x", "support_y", "query_x", "query_y")))
