"""``painterly sweep``: the contact sheet's layout, and the command end to end."""

import numpy as np
import pytest
import torch
from PIL import Image

from painterly.cli import main
from painterly.cli.sweep import GAP, LABEL_HEIGHT, ROW_LABEL_WIDTH, contact_sheet
from painterly.images import read_metadata
from painterly.weights import layout_keys

from conftest import run_cli


def dark_pixels(image: Image.Image, box: tuple[int, int, int, int]) -> int:
    return int((np.asarray(image.crop(box).convert("L")) < 128).sum())


def test_contact_sheet_places_cells_on_the_grid_with_labels():
    colours = [[(255, 0, 0), (0, 255, 0), (0, 0, 255)], [(255, 255, 0), (0, 255, 255), (255, 0, 255)]]
    cells = [[Image.new("RGB", (20, 10), colour) for colour in row] for row in colours]
    sheet = contact_sheet(cells, ["a=1", "a=2", "a=3"], ["b=1", "b=2"])
    assert sheet.size == (ROW_LABEL_WIDTH + 3 * 20 + 4 * GAP, LABEL_HEIGHT + 2 * 10 + 3 * GAP)
    for row, colour_row in enumerate(colours):
        for column, colour in enumerate(colour_row):
            x = ROW_LABEL_WIDTH + GAP + column * (20 + GAP)
            y = LABEL_HEIGHT + GAP + row * (10 + GAP)
            assert sheet.getpixel((x, y)) == colour and sheet.getpixel((x + 19, y + 9)) == colour
            assert sheet.getpixel((x - 1, y)) == (255, 255, 255)
    assert dark_pixels(sheet, (ROW_LABEL_WIDTH, 0, sheet.width, LABEL_HEIGHT)) > 20  # column labels
    assert dark_pixels(sheet, (0, LABEL_HEIGHT, ROW_LABEL_WIDTH, sheet.height)) > 20  # row labels
    assert contact_sheet(cells[:1], ["a=1", "a=2", "a=3"]).size == (3 * 20 + 4 * GAP, LABEL_HEIGHT + 10 + 2 * GAP)


def test_sweep_renders_the_stated_grid(scene_path, stripes_path, tmp_path):
    sheet_path = tmp_path / "sheet.png"
    result = run_cli("sweep", str(scene_path), str(stripes_path), "-o", str(sheet_path), "--size", "32", "--iterations", "4",
                     "--weights", "random", "--quiet", "--content-layers", "relu2_1", "--style-layers", "relu1_1", "relu2_1",
                     "--init", "content", "--param", "style_weight", "1", "1e5", "1e7", "--param2", "style-scale", "0.75", "1.5",
                     "--profile", "none")  # the recipe's weight scale, not the random-features profile's
    assert result.returncode == 0, result.stderr
    assert "2 rows x 3 columns" in result.stderr
    sheet = Image.open(sheet_path).convert("RGB")
    cell_w, cell_h = 32, 21  # the scene is 96x64
    assert sheet.size == (ROW_LABEL_WIDTH + 3 * cell_w + 4 * GAP, LABEL_HEIGHT + 2 * cell_h + 3 * GAP)
    assert dark_pixels(sheet, (ROW_LABEL_WIDTH, 0, sheet.width, LABEL_HEIGHT)) > 20
    assert dark_pixels(sheet, (0, LABEL_HEIGHT, ROW_LABEL_WIDTH, sheet.height)) > 20
    cells = [
        sheet.crop((x, y, x + cell_w, y + cell_h)).tobytes()
        for y in (LABEL_HEIGHT + GAP, LABEL_HEIGHT + 2 * GAP + cell_h)
        for x in (ROW_LABEL_WIDTH + GAP + column * (cell_w + GAP) for column in range(3))
    ]
    assert len(set(cells)) == 6  # every setting made a different picture
    assert read_metadata(sheet_path)["columns"] == ["style_weight", [1, 1e5, 1e7]]


def test_sweep_refuses_unknown_or_repeated_settings(scene_path, stripes_path, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit:
        main(["sweep", str(scene_path), str(stripes_path), "--param", "gamma", "0.5", "1"])
    assert exit.value.code == 2 and "cannot sweep 'gamma'" in capsys.readouterr().err
    code = main(["sweep", str(scene_path), str(stripes_path), "-o", str(tmp_path / "s.png"),
                 "--param", "tv_weight", "0", "1", "--param2", "tv-weight", "2"])
    assert code == 2 and "both sweep tv_weight" in capsys.readouterr().err


def test_alpha_sweeps_adain_with_a_decoder_file(scene_path, stripes_path, tmp_path, capsys):
    torch.manual_seed(0)
    decoder = tmp_path / "decoder.pth"
    torch.save({key: torch.randn(shape) * 0.05 for key, shape in layout_keys("decoder").items()}, decoder)
    sheet_path = tmp_path / "alpha.png"
    common = ["sweep", str(scene_path), str(stripes_path), "--size", "48", "--quiet",
              "--encoder", "random", "--decoder", str(decoder)]
    assert main([*common, "-o", str(sheet_path), "--param", "alpha", "0", "0.5", "1"]) == 0
    sheet = Image.open(sheet_path).convert("RGB")
    cell_w, cell_h = 48, 32
    assert sheet.size == (3 * cell_w + 4 * GAP, LABEL_HEIGHT + cell_h + 2 * GAP)
    cells = [sheet.crop((x, LABEL_HEIGHT + GAP, x + cell_w, LABEL_HEIGHT + GAP + cell_h)).tobytes()
             for x in (GAP + column * (cell_w + GAP) for column in range(3))]
    assert len(set(cells)) == 3  # alpha changed every picture
    capsys.readouterr()
    code = main([*common, "-o", str(tmp_path / "mixed.png"), "--param", "alpha", "0", "1", "--param2", "tv_weight", "0", "1"])
    assert code == 2 and "sweep alpha with nothing else" in capsys.readouterr().err
    assert not (tmp_path / "mixed.png").exists()
