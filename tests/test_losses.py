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
