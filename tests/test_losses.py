import pytest
import torch

from painterly.losses import (
    channel_mean_std,
    content_loss,
    gram_matrix,
    gram_style_loss,
    masked_gram_matrix,
    mean_std_style_loss,
    total_variation_loss,
)

# One sample, two channels, 2x2 positions: F = [[1, 2, 3, 4], [0, 1, 0, 1]]
F = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]], [[0.0, 1.0], [0.0, 1.0]]]])


def test_gram_matrix_by_hand():
    raw = torch.tensor([[[30.0, 6.0], [6.0, 2.0]]])
    torch.testing.assert_close(gram_matrix(F, normalization="none"), raw)
    torch.testing.assert_close(gram_matrix(F, normalization="positions"), raw / 4)
    torch.testing.assert_close(gram_matrix(F, normalization="channels_positions"), raw / 8)
    with pytest.raises(ValueError):
        gram_matrix(F[0])


def test_masked_gram_with_full_mask_equals_gram_and_ignores_outside():
    ones = torch.ones(1, 1, 2, 2)
    torch.testing.assert_close(masked_gram_matrix(F, ones), gram_matrix(F))
    left = torch.tensor([[[[1.0, 0.0], [1.0, 0.0]]]])
    # positions counted by the mask: 2; left column F = [[1, 3], [0, 0]]
    expected = torch.tensor([[[10.0, 0.0], [0.0, 0.0]]]) / (2 * 2)
    torch.testing.assert_close(masked_gram_matrix(F, left), expected)


def test_content_loss_reductions():
    target = torch.zeros_like(F)
    assert content_loss(F, target).item() == pytest.approx((1 + 4 + 9 + 16 + 1 + 1) / 8)
    assert content_loss(F, target, reduction="sum").item() == pytest.approx(32)
    assert content_loss(F, target, reduction="paper").item() == pytest.approx(16)


def test_gram_style_loss_reductions():
    a = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])
    b = torch.zeros_like(a)
    assert gram_style_loss(a, b).item() == pytest.approx(30 / 4)
    assert gram_style_loss(a, b, reduction="sum").item() == pytest.approx(30)
    assert gram_style_loss(a, b, reduction="paper", positions=5).item() == pytest.approx(30 / (4 * 4 * 25))
    assert gram_style_loss(a, b, reduction="paper", positions=5, channels=3).item() == pytest.approx(30 / (4 * 9 * 25))


def test_total_variation_by_hand():
    image = torch.tensor([[[[0.0, 1.0], [2.0, 4.0]]]])  # dx: 1, 2; dy: 2, 3
    assert total_variation_loss(image).item() == pytest.approx(1 + 4 + 4 + 9)
    assert total_variation_loss(image, kind="absolute_mean").item() == pytest.approx(0.5 * (1.5 + 2.5))
    # keras: only the top-left pixel has both neighbours: (1^2 + 2^2)^1.25
    assert total_variation_loss(image, kind="keras").item() == pytest.approx(5**1.25)
    assert total_variation_loss(torch.ones(1, 3, 5, 5)).item() == 0


def test_mean_std_by_hand():
    mean, std = channel_mean_std(F, eps=0.0)
    torch.testing.assert_close(mean.flatten(), torch.tensor([2.5, 0.5]))
    torch.testing.assert_close(std.flatten(), torch.tensor([1.25**0.5, 0.5]))
    shifted = F + torch.tensor([1.0, 0.0]).view(1, 2, 1, 1)
    assert mean_std_style_loss(shifted, F, eps=0.0).item() == pytest.approx(1 / 2)


# -- style losses beyond the Gram matrix -------------------------------------------------------

from painterly.losses import (  # noqa: E402
    histogram_loss,
    masked_channel_mean_std,
    mean_std_distance,
    quantile_loss,
    random_projections,
    sliced_wasserstein_loss,
    sorted_projections,
)


def _features(seed: int, shape=(1, 3, 4, 5), dtype=torch.float64) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def test_new_style_losses_are_zero_at_identity_and_positive_elsewhere():
    a, b = _features(0), _features(1)
    projections = random_projections(3, 4, seed=0, dtype=torch.float64)
    for loss in (lambda x, y: sliced_wasserstein_loss(x, y, projections=projections), histogram_loss, mean_std_style_loss):
        assert loss(a, a).item() == pytest.approx(0, abs=1e-12)
        assert loss(a, b).item() > 1e-3
    # The same values in another order are the same distribution: a pure texture statistic.
    shuffled = a.flatten(2)[:, :, torch.randperm(20, generator=torch.Generator().manual_seed(2))].view_as(a)
    assert histogram_loss(shuffled, a).item() == pytest.approx(0, abs=1e-12)
    assert sliced_wasserstein_loss(shuffled, a, projections=projections).item() == pytest.approx(0, abs=1e-12)


def test_histogram_loss_is_the_mean_squared_distance_to_the_histogram_matched_features():
    a, b = _features(0, (1, 2, 3, 3)), _features(1, (1, 2, 3, 3))
    # Risser et al.'s form: remap a's values so their histogram is b's, then || a - R(a) ||^2.
    ranks = a.flatten(2).argsort(-1).argsort(-1)
    matched = b.flatten(2).sort(-1).values.gather(-1, ranks)
    expected = (a.flatten(2) - matched).pow(2).mean()
    assert histogram_loss(a, b).item() == pytest.approx(expected.item())


def test_quantile_loss_resamples_a_target_of_another_size():
    small = torch.linspace(0, 1, 5, dtype=torch.float64).view(1, 1, 5)
    large = torch.linspace(0, 1, 9, dtype=torch.float64).view(1, 1, 9)
    assert quantile_loss(small, large).item() == pytest.approx(0, abs=1e-12)
    with pytest.raises(ValueError):
        quantile_loss(small, torch.zeros(1, 2, 5))


@pytest.mark.parametrize("name", ["sliced-wasserstein", "histogram", "mean-std"])
def test_new_style_losses_pass_gradcheck(name):
    target = _features(1, (1, 3, 3, 4))
    input = _features(0, (1, 3, 3, 4)).requires_grad_(True)
    projections = random_projections(3, 5, seed=0, dtype=torch.float64)
    loss = {
        "sliced-wasserstein": lambda x: sliced_wasserstein_loss(x, target, projections=projections),
        "histogram": lambda x: histogram_loss(x, target),
        "mean-std": lambda x: mean_std_style_loss(x, target),
    }[name]
    assert torch.autograd.gradcheck(loss, (input,))


def test_shape_checks_of_the_new_losses():
    a = _features(0)
    with pytest.raises(ValueError):
        sliced_wasserstein_loss(a, _features(1, (1, 4, 4, 5)), projections=random_projections(3, 2, seed=0))
    with pytest.raises(ValueError):
        sorted_projections(a, torch.ones(4, 2))
    with pytest.raises(ValueError):
        histogram_loss(a[0], a[0])
    with pytest.raises(ValueError):
        masked_channel_mean_std(a, torch.ones(1, 1, 2, 2))


def test_projections_are_seeded_unit_vectors():
    p = random_projections(6, 4, seed=3)
    torch.testing.assert_close(p, random_projections(6, 4, seed=3))
    assert not torch.equal(p, random_projections(6, 4, seed=4))
    torch.testing.assert_close(p.norm(dim=0), torch.ones(4))


def test_masked_mean_std_with_full_mask_equals_the_plain_one_and_ignores_outside():
    a = _features(0, dtype=torch.float32)
    full = masked_channel_mean_std(a, torch.ones(1, 1, 4, 5))
    for got, want in zip(full, channel_mean_std(a)):
        torch.testing.assert_close(got, want)
    left = torch.zeros(1, 1, 4, 5)
    left[..., :2] = 1
    inside = masked_channel_mean_std(a, left)
    for got, want in zip(inside, channel_mean_std(a[..., :2])):
        torch.testing.assert_close(got, want)
    assert mean_std_distance(full, full).item() == 0
