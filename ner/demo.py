"""``ner demo``: NER and stock CEBRA side by side on one session, decoded and drawn."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt

from ner.data import Session
from ner.evaluation.decoding import decode_session
from ner.methods import make_method
from ner.viz.plotting import plot_embedding_3d, plot_true_vs_decoded, save_figure

REPORTED = ("train_velocity_r2", "test_velocity_r2", "train_position_r2",
            "test_position_r2", "train_peak_accuracy", "test_peak_accuracy")


def paper_estimators(iterations: int, seed: int | None = 0,
                     device: str = "cuda_if_available", verbose: bool = True) -> dict:
    """NER and the paper's 3-D stock CEBRA baseline (``ner.methods``' ``ner`` and ``cebra3d``)."""
    return {name: make_method(method, iterations=iterations, seed=seed, device=device).set_params(verbose=verbose)
            for name, method in (("NER", "ner"), ("CEBRA", "cebra3d"))}


def run_demo(session: Session, iterations: int = 2000, seed: int | None = 0,
             device: str = "cuda_if_available", figure: Path | None = None,
             verbose: bool = True) -> dict:
    """Train both methods on the session's training trials, decode both splits.

    Returns ``{method: {metric: value}}`` for the metrics in ``REPORTED``.
    """
    train, test = session.train, session.test
    results, embeddings, decoded = {}, {}, {}
    for name, estimator in paper_estimators(iterations, seed, device, verbose).items():
        if verbose:
            print(f"training {name} on {session.name} {session.area} "
                  f"({iterations} iterations)")
        estimator.fit(train.neural, train.labels)
        train_embedding = estimator.transform(train.neural)
        test_embedding = estimator.transform(test.neural)
        scores = decode_session(train_embedding, train.labels, test_embedding,
                                test.labels, session.trial_length)
        results[name] = {key: float(scores[key]) for key in REPORTED}
        embeddings[name] = test_embedding
        decoded[name] = scores["test_predicted_velocity"]
    if figure is not None:
        draw_demo_figure(session, embeddings, decoded, results, figure)
    return results


def draw_demo_figure(session, embeddings, decoded, results, path_stem):
    """Fig 1 in spirit: each method's test embedding by angle, and decoded velocity."""
    test = session.test
    fig = plt.figure(figsize=(10, 6.5))
    for column, (name, embedding) in enumerate(embeddings.items()):
        ax = fig.add_subplot(3, 2, column + 1, projection="3d")
        r2 = results[name]
        plot_embedding_3d(ax, embedding, test.angle,
                          f"{name}: test velocity R² {r2['test_velocity_r2']:.2f}, "
                          f"position R² {r2['test_position_r2']:.2f}",
                          trial_length=session.trial_length)
        for row, axis_name in enumerate(("vx", "vy")):
            ax = fig.add_subplot(3, 2, 3 + 2 * row + column)
            plot_true_vs_decoded(ax, test.velocity[:, row] / 10,
                                 decoded[name][:, row] / 10, f"{axis_name} (cm/s)")
            if row == 1:
                ax.set_xlabel("time bin (30 ms)", fontsize=8)
    fig.axes[1].legend(fontsize=7, loc="upper right")
    fig.suptitle(f"{session.name} {session.area}: held-out trials", fontsize=10)
    written = save_figure(fig, path_stem)
    plt.close(fig)
    return written
