"""The GPU path: fit, transform, save on CUDA and load on the CPU; the loss's exactness on CUDA.

Skipped where torch sees no CUDA device (``pytest -m gpu`` runs only these).
"""

import numpy as np
import pytest
import torch

from ner import NER
from ner.data import synthetic_session
from ner.model.loss import RankLoss

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device: the GPU path is not tested")]

FAST = dict(max_iterations=50, batch_size=64, verbose=False, seed=0)


def test_fit_on_gpu_then_load_and_embed_on_the_cpu(tmp_path):
    session = synthetic_session(n_trials=48, n_neurons=24, seed=3)
    model = NER(**FAST, device="cuda").fit(session.neural, session.labels)
    assert model.device_.startswith("cuda") and next(model.solver_.model.parameters()).is_cuda
    on_gpu = model.transform(session.neural)
    assert on_gpu.shape == (len(session.neural), 3) and np.isfinite(on_gpu).all()
    model.save(tmp_path / "model.pt")
    loaded = NER.load(tmp_path / "model.pt", device="cpu")
    assert loaded.device_ == "cpu" and not next(loaded.solver_.model.parameters()).is_cuda
    np.testing.assert_allclose(loaded.transform(session.neural), on_gpu, atol=1e-5)


def test_loss_on_cuda_equals_the_cpu_in_float64():
    generator = torch.Generator().manual_seed(0)
    ref, pos = (torch.randn(512, 3, generator=generator, dtype=torch.float64) for _ in range(2))
    labels = torch.cat([3 * torch.randn(512, 2, generator=generator, dtype=torch.float64),
                        45.0 * torch.randint(0, 8, (512, 1), generator=generator)], 1)
    values, grads = [], []
    for device in ("cpu", "cuda"):
        r, p = (t.to(device).requires_grad_() for t in (ref, pos))
        loss = RankLoss()(r, p, labels.to(device))
        loss.backward()
        values.append(loss.item())
        grads.append(torch.cat([r.grad, p.grad]).cpu())
    assert values[0] == pytest.approx(values[1], rel=1e-12)
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-9, atol=1e-12)
