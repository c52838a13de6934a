"""Stock CEBRA with the settings the NER paper compared against."""

from __future__ import annotations

import cebra


def cebra_baseline(output_dimension: int = 3, max_iterations: int = 20000, **overrides) -> cebra.CEBRA:
    """An unfitted ``cebra.CEBRA`` configured as the paper's CEBRA baseline.

    offset1-model, batch 512, learning rate 1e-4, temperature 1, time_offsets 1 and ``time_delta``
    positives. Fit it with ``fit(neural, labels)`` on all 3 label columns (vx*10, vy*10, angle):
    CEBRA then searches positives on all three, as the original did. ``output_dimension`` is 3 or 16
    in the paper; ``overrides`` replace any other ``cebra.CEBRA`` argument.
    """
    settings = dict(
        model_architecture="offset1-model",
        batch_size=512,
        learning_rate=1e-4,
        temperature=1.0,
        time_offsets=1,
        conditional="time_delta",
        output_dimension=output_dimension,
        max_iterations=max_iterations,
        device="cuda_if_available",
        verbose=False,
    )
    settings.update(overrides)
    return cebra.CEBRA(**settings)
