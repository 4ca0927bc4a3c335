import pytest
import torch

from painterly.color import (
    color_statistics,
    keep_luminance,
    luminance,
    match_color,
    match_histogram,
    prepare_colors,
    restore_colors,
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


def test_prepare_colors_match_gives_styles_the_content_colour_statistics():
    torch.manual_seed(1)
    content = torch.rand(1, 3, 24, 24) * torch.tensor([0.2, 0.5, 0.3]).view(1, 3, 1, 1) + 0.2
    styles = [torch.rand(1, 3, 16, 30) * 0.4, torch.rand(1, 3, 20, 20) * 0.3 + 0.6]
    seen_content, seen_styles = prepare_colors(content, styles, "match")
    assert seen_content is content
    mean_c, cov_c = color_statistics(content)
    for style in seen_styles:
        mean_s, cov_s = color_statistics(style)
        torch.testing.assert_close(mean_s, mean_c, atol=1e-4, rtol=0)
        torch.testing.assert_close(cov_s, cov_c, atol=1e-4, rtol=0)
    assert prepare_colors(content, styles, "none")[1] == styles
    with pytest.raises(ValueError, match="luminance"):
        prepare_colors(content, styles, "sepia")


def test_prepare_colors_luminance_gives_grey_images_with_the_content_luminance_histogram():
    torch.manual_seed(2)
    content = torch.rand(1, 3, 16, 16)
    style = torch.rand(1, 3, 16, 16) ** 3  # darker than the content
    seen_content, (seen_style,) = prepare_colors(content, [style], "luminance")
    for image in (seen_content, seen_style):
        assert torch.equal(image[:, 0], image[:, 1]) and torch.equal(image[:, 1], image[:, 2])
    torch.testing.assert_close(seen_content[:, :1], luminance(content))
    torch.testing.assert_close(seen_style[:, :1].flatten().sort().values, luminance(content).flatten().sort().values)
    # the style's own luminance ordering (its texture) is kept
    assert torch.equal(seen_style[:, 0].flatten().argsort(), luminance(style).flatten().argsort())
    assert torch.equal(restore_colors(seen_style, content, "luminance"), with_chroma_of(seen_style, content))
    assert restore_colors(style, content, "match") is style


def test_keep_luminance_takes_the_content_luminance_and_the_result_chroma():
    content = torch.rand(1, 3, 8, 8) * 0.5 + 0.25
    result = torch.rand(1, 3, 8, 8) * 0.5 + 0.25
    combined = keep_luminance(result, content)
    torch.testing.assert_close(luminance(combined), luminance(content), atol=1e-5, rtol=0)
    torch.testing.assert_close(rgb_to_ycbcr(combined)[:, 1:], rgb_to_ycbcr(result)[:, 1:], atol=1e-5, rtol=0)
