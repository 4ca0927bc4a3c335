import pytest
import torch

from painterly.color import (
    color_statistics,
    luminance,
    match_color,
    match_histogram,
    rgb_to_ycbcr,
    with_chroma_of,
    ycbcr_to_rgb,
)


def test_ycbcr_round_trip_and_grey_has_neutral_chroma():
    image = torch.rand(2, 3, 8, 9)
    torch.testing.assert_close(ycbcr_to_rgb(rgb_to_ycbcr(image)), image, atol=1e-5, rtol=0)
    grey = torch.full((1, 3, 2, 2), 0.3)
    torch.testing.assert_close(rgb_to_ycbcr(grey)[0, :, 0, 0], torch.tensor([0.3, 0.5, 0.5]), atol=1e-6, rtol=0)


def test_match_color_gives_the_reference_mean_and_covariance():
    torch.manual_seed(0)
    image = torch.rand(1, 3, 32, 32) * torch.tensor([0.3, 0.6, 0.2]).view(1, 3, 1, 1) + 0.1
    mix = torch.tensor([[0.5, 0.2, 0.1], [0.1, 0.3, 0.0], [0.0, 0.1, 0.4]])
    reference = torch.einsum("ij,njhw->nihw", mix, torch.rand(1, 3, 40, 20)) + 0.1
    matched = match_color(image, reference)
    mean_m, cov_m = color_statistics(matched)
    mean_r, cov_r = color_statistics(reference)
    torch.testing.assert_close(mean_m, mean_r, atol=1e-4, rtol=0)
    torch.testing.assert_close(cov_m, cov_r, atol=1e-4, rtol=0)


def test_match_histogram_takes_the_reference_values_in_rank_order():
    source = torch.tensor([[[[3.0, 1.0, 2.0, 0.0]]]])
    reference = torch.tensor([[[[10.0, 40.0, 20.0, 30.0]]]])
    assert match_histogram(source, reference).flatten().tolist() == [40.0, 20.0, 30.0, 10.0]
    bigger = torch.rand(1, 1, 16, 16)
    matched = match_histogram(bigger, reference)
    assert matched.min().item() == pytest.approx(10) and matched.max().item() == pytest.approx(40)
    assert torch.equal(matched.flatten().argsort(), bigger.flatten().argsort())  # order kept


def test_with_chroma_of_keeps_the_chroma():
    content = torch.rand(1, 3, 8, 8) * 0.5 + 0.25
    stylised = torch.rand(1, 3, 8, 8) * 0.5 + 0.25
    combined = with_chroma_of(luminance(stylised), content)
    torch.testing.assert_close(rgb_to_ycbcr(combined)[:, 1:], rgb_to_ycbcr(content)[:, 1:], atol=1e-5, rtol=0)
    torch.testing.assert_close(luminance(combined), luminance(stylised), atol=1e-5, rtol=0)
