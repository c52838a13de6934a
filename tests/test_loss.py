import pytest
import torch

from ner.model.loss import LabelDistance, RankLoss, rank_loss
from ner.model.ranking import rank_rows


def defining_formula(features, labels, temperature, distance=LabelDistance()):
    """The loss exactly as its definition reads (ner.model.loss), one row i at a time (O(n^3))."""
    n = len(features)
    label_distance = distance(labels, labels)
    eye = torch.eye(n, dtype=torch.bool)
    squared = ((features[:, None] - features[None]) ** 2).sum(-1)
    # sqrt is not differentiable at 0: keep the diagonal away from it.
    similarity = -torch.sqrt(torch.where(eye, torch.ones_like(squared), squared))
    similarity = similarity.masked_fill(eye, 0.0) / temperature
    shift = similarity.masked_fill(eye, -torch.inf).amax(1, keepdim=True).detach()
    weights = (similarity - shift).exp()
    total = 0.0
    for i in range(n):
        # mask[j, k]: k counts in j's denominator (D_ik >= D_ij, k != i)
        mask = label_distance[i][None, :] >= label_distance[i][:, None]
        mask[:, i] = False
        log_denominator = (mask.to(weights.dtype) @ weights[i]).log() + shift[i]
        terms = similarity[i] - log_denominator
        total = total + terms[torch.arange(n) != i].sum()
    return -total / (n * (n - 1))


def make_batch(batch_size, ties, seed):
    generator = torch.Generator().manual_seed(seed)
    ref = torch.randn(batch_size, 3, generator=generator, dtype=torch.float64)
    pos = ref + 0.3 * torch.randn(batch_size, 3, generator=generator, dtype=torch.float64)
    if ties:  # few distinct values: many exactly equal label distances
        labels = torch.randint(0, 3, (batch_size, 3), generator=generator).double()
        labels[:, 2] *= 45.0
    else:
        labels = torch.randn(batch_size, 3, generator=generator, dtype=torch.float64)
        labels[:, 2] = torch.rand(batch_size, generator=generator, dtype=torch.float64) * 360
    own = labels[torch.randperm(batch_size, generator=generator)]
    return ref.requires_grad_(), pos.requires_grad_(), labels, own


GRID = [(b, ties, t, p) for b in (8, 32) for ties in (False, True)
        for t in (0.5, 1.0, 2.0) for p in ("reference", "own")]
# The O(n^3) reference is slower at batch 256 (n = 512): two corners of the grid there.
LARGE = [(256, True, 1.0, "reference"), (256, False, 0.5, "own")]


@pytest.mark.parametrize("batch_size, ties, temperature, positive_labels", GRID + LARGE)
def test_loss_equals_defining_formula(batch_size, ties, temperature, positive_labels):
    ref, pos, labels, own = make_batch(batch_size, ties, seed=batch_size)
    pos_labels = own if positive_labels == "own" else None
    fast = RankLoss(temperature)(ref, pos, labels, pos_labels)
    exact = defining_formula(torch.cat([ref, pos]),
                             torch.cat([labels, labels if pos_labels is None else own]),
                             temperature)
    assert fast.item() == pytest.approx(exact.item(), abs=1e-5)
    fast_grad = torch.autograd.grad(fast, [ref, pos])
    exact_grad = torch.autograd.grad(exact, [ref, pos])
    for got, want in zip(fast_grad, exact_grad):
        assert torch.allclose(got, want, atol=1e-6, rtol=0)


def test_float32_matches_float64():
    ref, pos, labels, _ = make_batch(128, ties=True, seed=1)
    loss64 = RankLoss()(ref, pos, labels)
    loss32 = RankLoss()(ref.float(), pos.float(), labels.float())
    assert loss32.dtype == torch.float32
    assert loss32.item() == pytest.approx(loss64.item(), abs=1e-5)


def test_temperature_changes_the_loss():
    ref, pos, labels, _ = make_batch(32, ties=False, seed=2)
    assert RankLoss(0.5)(ref, pos, labels) != RankLoss(2.0)(ref, pos, labels)


def test_far_apart_embeddings_stay_finite():
    # Distances of hundreds of temperatures would underflow a naive exp.
    ref, pos, labels, _ = make_batch(64, ties=False, seed=3)
    loss = RankLoss(0.01)(ref * 100, pos * 100, labels)
    assert torch.isfinite(loss)
    loss.backward()
    assert torch.isfinite(ref.grad).all()


def test_small_temperature_stays_exact_in_float32():
    # Samples ~100 temperatures apart: float32 exp would underflow; the loss
    # switches to float64 and still matches the defining formula.
    ref, pos, labels, _ = make_batch(32, ties=True, seed=7)
    ref32 = (ref.detach() * 3).float().requires_grad_()
    pos32 = (pos.detach() * 3).float().requires_grad_()
    fast = RankLoss(0.05)(ref32, pos32, labels.float())
    assert fast.dtype == torch.float32
    exact = defining_formula(torch.cat([ref32, pos32]).double(),
                             torch.cat([labels, labels]), 0.05)
    assert fast.item() == pytest.approx(exact.item(), rel=1e-5)
    fast.backward()
    expected = torch.autograd.grad(exact, [ref32])[0]
    assert torch.allclose(ref32.grad.double(), expected.double(), atol=1e-6)


def test_identical_reference_and_positive_gives_finite_gradient():
    ref, _, labels, _ = make_batch(16, ties=False, seed=4)
    pos = ref.detach().clone().requires_grad_()
    RankLoss()(ref, pos, labels).backward()
    assert torch.isfinite(ref.grad).all() and torch.isfinite(pos.grad).all()


def test_circular_label_distance_goes_the_short_way():
    labels = torch.tensor([[0.0, 0.0, 350.0], [1.0, 0.0, 10.0], [0.0, 2.0, 180.0]])
    distance = LabelDistance()(labels, labels)
    assert distance[0, 1].item() == pytest.approx(1 + 20)
    assert distance[0, 2].item() == pytest.approx(2 + 170)
    assert torch.equal(distance, distance.T)
    linear = LabelDistance(circular=())(labels, labels)
    assert linear[0, 1].item() == pytest.approx(1 + 340)


def test_other_label_layouts_work():
    # Head direction only: one circular column of period 2 pi.
    ref, pos, _, _ = make_batch(16, ties=False, seed=5)
    heading = torch.rand(16, 1, dtype=torch.float64) * 6.28
    distance = LabelDistance(circular=((0, 6.283185307179586),))
    loss = RankLoss(1.0, distance)(ref, pos, heading)
    exact = defining_formula(torch.cat([ref, pos]), torch.cat([heading, heading]), 1.0, distance)
    assert loss.item() == pytest.approx(exact.item(), abs=1e-10)


def test_bad_shapes_are_named():
    ref, pos, labels, _ = make_batch(8, ties=False, seed=6)
    with pytest.raises(ValueError, match="ref and pos"):
        RankLoss()(ref, pos[:4], labels)
    with pytest.raises(ValueError, match="labels must be"):
        RankLoss()(ref, pos, labels[:5])
    with pytest.raises(ValueError, match="temperature"):
        RankLoss(0.0)
    with pytest.raises(ValueError, match="copies"):
        rank_loss(torch.cat([ref, pos]), labels, copies=3)


@pytest.mark.parametrize("ties", [False, True])
def test_float32_gradient_matches_float64(ties):
    # float32 labels take the packed (value, column) sort, ties included.
    ref, pos, labels, _ = make_batch(128, ties=ties, seed=1)
    want = torch.autograd.grad(RankLoss()(ref, pos, labels), [ref, pos])
    ref32, pos32 = (t.detach().float().requires_grad_() for t in (ref, pos))
    got = torch.autograd.grad(RankLoss()(ref32, pos32, labels.float()), [ref32, pos32])
    for g, w in zip(got, want):
        assert g.dtype == torch.float32
        assert torch.allclose(g.double(), w, atol=1e-7, rtol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("positive_labels", ["reference", "own"])
def test_all_labels_equal_matches_defining_formula(dtype, positive_labels):
    # One tie group per row: every denominator is the whole row.
    ref, pos, labels, _ = make_batch(16, ties=False, seed=9)
    same = labels[:1].expand(16, 3).clone()
    ref, pos = (t.detach().to(dtype).requires_grad_() for t in (ref, pos))
    fast = RankLoss()(ref, pos, same.to(dtype), same.to(dtype) if positive_labels == "own" else None)
    exact = defining_formula(torch.cat([ref, pos]).double(), torch.cat([same, same]), 1.0)
    assert fast.item() == pytest.approx(exact.item(), abs=1e-5)
    for got, want in zip(torch.autograd.grad(fast, [ref, pos]), torch.autograd.grad(exact, [ref, pos])):
        assert torch.allclose(got.double(), want.double(), atol=1e-6, rtol=0)


def test_three_copies_match_defining_formula():
    generator = torch.Generator().manual_seed(3)
    features = torch.randn(60, 3, generator=generator, dtype=torch.float64, requires_grad=True)
    labels = torch.randint(0, 3, (20, 3), generator=generator).double()
    fast = rank_loss(features, labels, 0.7, copies=3)
    exact = defining_formula(features, labels.repeat(3, 1), 0.7)
    assert fast.item() == pytest.approx(exact.item(), abs=1e-10)
    got, want = (torch.autograd.grad(loss, features)[0] for loss in (fast, exact))
    assert torch.allclose(got, want, atol=1e-10, rtol=0)


@pytest.mark.parametrize("m", [300, 5000])
def test_label_rows_rank_as_a_stable_argsort(m):
    # Near-collisions (distances a few ulps apart, which floor to the same 32-bit
    # key and come out misordered) and exact ties, in some rows but not others.
    generator = torch.Generator().manual_seed(m)
    rows = 40 if m > 4096 else m
    distance = 100 * torch.rand(rows, m, generator=generator)
    bits = distance[::3, :20].view(torch.int32)
    distance[::3, 20:40] = (bits - torch.randint(1, 64, bits.shape, generator=generator, dtype=torch.int32)).view(torch.float32)
    distance[::5, 40:60] = distance[::5, :20]
    far_to_near, near_to_far, ties = rank_rows(distance)
    want = torch.from_numpy(distance.numpy().argsort(axis=1, kind="stable"))
    assert torch.equal(near_to_far, want)
    assert torch.equal(far_to_near, want.flip(1))
    ranked = distance.gather(1, far_to_near)
    tied = (ranked[:, :-1] == ranked[:, 1:]).nonzero()
    assert torch.equal(ties, tied[:, 0] * m + tied[:, 1])
    assert len(ties) > 0
