import pytest
import torch
from cebra.distributions import ContinuousIndex, TimedeltaDistribution

from ner.data import load_session, synthetic_session
from ner.model.sampling import ExactTimedeltaDistribution, KDTreeIndex


def assert_same_picks(samples: torch.Tensor, queries: torch.Tensor):
    """KD-tree and CEBRA's dense search agree, except between exactly tied samples."""
    dense = ContinuousIndex(samples).search(queries)
    tree = KDTreeIndex(samples).search(queries)
    differ = dense != tree
    exact = samples.double()
    query = queries.double()
    to_dense = (exact[dense] - query).square().sum(1)
    to_tree = (exact[tree] - query).square().sum(1)
    # The tree is exact: never farther than the dense pick.
    assert torch.all(to_tree <= to_dense + 1e-9)
    # Where they differ, CEBRA's float32 expansion |x|^2 + |q|^2 - 2 x.q could
    # not tell the two apart: the gap is within its rounding.
    rounding = 1e-6 * (exact[dense].square().sum(1) + query.square().sum(1))
    assert torch.all((to_dense - to_tree)[differ] <= rounding[differ])
    return differ.float().mean().item()


def test_kdtree_matches_dense_search_on_all_three_label_columns():
    # The CEBRA baselines search positives on (vx, vy, angle): the tree is never farther than the dense
    # pick, and where they differ the dense search could not tell them apart. (Many bins share one label
    # row, at rest before and after the reach, so differing picks among exact ties are common here.)
    labels = torch.from_numpy(synthetic_session(seed=1).labels.copy())
    generator = torch.Generator().manual_seed(0)
    picks = torch.randperm(len(labels), generator=generator)[:2000]
    queries = labels[picks] + 0.5 * torch.randn(2000, 3, generator=generator)
    assert_same_picks(labels, queries)


def test_kdtree_matches_dense_search_on_synthetic_velocity():
    velocity = torch.from_numpy(synthetic_session(seed=1).velocity.copy())
    generator = torch.Generator().manual_seed(0)
    picks = torch.randperm(len(velocity), generator=generator)[:2000]
    queries = velocity[picks] + 0.5 * torch.randn(2000, 2, generator=generator)
    assert assert_same_picks(velocity, queries) < 0.01


@pytest.mark.slow
def test_kdtree_matches_dense_search_on_real_session(data_dir):
    session = load_session("Chewie_20161007", data_dir=data_dir)
    velocity = torch.from_numpy(session.velocity.copy())
    distribution = TimedeltaDistribution(velocity, 1)
    reference = distribution.sample_prior(4096)
    steps = distribution.time_difference[distribution.randint(len(velocity), (4096,))]
    queries = velocity[reference] + steps
    assert assert_same_picks(velocity, queries) < 0.01


def test_exact_distribution_is_seedable_and_draws_near_positives():
    labels = torch.from_numpy(synthetic_session(seed=2).velocity.copy())
    draws = []
    for _ in range(2):
        distribution = ExactTimedeltaDistribution(labels, time_delta=1, seed=7)
        reference = distribution.sample_prior(512)
        draws.append((reference, distribution.sample_conditional(reference)))
    assert torch.equal(draws[0][0], draws[1][0]) and torch.equal(draws[0][1], draws[1][1])
    reference, positive = draws[0]
    # Positives sit one typical time step away in label space, much closer than random pairs.
    near = (labels[positive] - labels[reference]).norm(dim=1).median()
    far = (labels[reference.roll(1)] - labels[reference]).norm(dim=1).median()
    assert near < far / 3


def test_conditional_rejects_bad_reference_shape():
    distribution = ExactTimedeltaDistribution(torch.randn(100, 2))
    with pytest.raises(ValueError, match="Reference indices"):
        distribution.sample_conditional(torch.zeros(2, 2, dtype=torch.long))
