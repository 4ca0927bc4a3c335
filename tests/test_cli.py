"""The command line as a user runs it: outputs, messages and exit codes."""


import pytest
from PIL import Image

from painterly.images import read_metadata

from conftest import run_cli, run_in_process

FAST = ["--size", "48", "--iterations", "4", "--weights", "random", "--quiet"]


def test_help_lists_commands_and_examples():
    result = run_cli("--help")
    assert result.returncode == 0 and "optimize" in result.stdout and "demo" in result.stdout
    result = run_cli("optimize", "--help")
    assert "examples:" in result.stdout and "gatys2016" in result.stdout


def test_optimize_writes_image_metadata_intermediates_and_plot(scene_path, stripes_path, tmp_path):
    out = tmp_path / "out" / "result.png"
    result = run_cli("optimize", str(scene_path), str(stripes_path), "-o", str(out), *FAST,
                     "--seed", "3", "--save-every", "2", "--plot", "--init", "content", "--tv-weight", "1e-5")
    assert result.returncode == 0, result.stderr
    with Image.open(out) as image:
        assert image.size == (48, 32)
    metadata = read_metadata(out)
    assert metadata["seed"] == 3 and metadata["weights"] == "random(seed=3)"
    assert metadata["iterations"] == 4 and metadata["tv_weight"] == 1e-5 and metadata["style"] == "stripes.png"
    assert metadata["precision"] == "float32"  # Gatys's default (bfloat16 is --precision bfloat16)
    assert (out.parent / "result_00002.png").is_file()
    assert (out.parent / "result_losses.png").is_file()
    assert sorted(p.name for p in out.parent.iterdir()) == ["result.png", "result.state.pt", "result_00002.png", "result_losses.png"]


def test_auto_weights_offline_say_they_fall_back(scene_path, stripes_path, tmp_path):
    result = run_cli("optimize", str(scene_path), str(stripes_path), "-o", str(tmp_path / "o.jpg"),
                     "--size", "32", "--iterations", "2", "--quiet")
    assert result.returncode == 0, result.stderr
    assert "using seeded random weights" in result.stderr
    assert read_metadata(tmp_path / "o.jpg")["weights"] == "random(seed=0)"


def test_same_seed_same_image(scene_path, stripes_path, tmp_path):
    for name in ("a.png", "b.png"):
        assert run_cli("optimize", str(scene_path), str(stripes_path), "-o", str(tmp_path / name), *FAST, "--init", "noise").returncode == 0
    assert Image.open(tmp_path / "a.png").tobytes() == Image.open(tmp_path / "b.png").tobytes()
    half = tmp_path / "bf16.png"
    assert run_cli("optimize", str(scene_path), str(stripes_path), "-o", str(half), *FAST, "--init", "noise",
                   "--precision", "bfloat16").returncode == 0
    assert read_metadata(half)["precision"] == "bfloat16"
    assert Image.open(half).tobytes() != Image.open(tmp_path / "a.png").tobytes()


def one_clear_error(result, *fragments):
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.mark.parametrize(
    "content_bytes,fragment",
    [(b"", "not an image"), (b"<html>hello</html>", "not an image"), (None, "cannot be decoded")],
)
def test_bad_images_fail_cleanly(tmp_path, stripes_path, content_bytes, fragment):
    bad = tmp_path / "bad.png"
    if content_bytes is None:
        Image.new("RGB", (64, 64), "red").save(bad)
        bad.write_bytes(bad.read_bytes()[:-40])
    else:
        bad.write_bytes(content_bytes)
    out = tmp_path / "out.png"
    one_clear_error(run_cli("optimize", str(bad), str(stripes_path), "-o", str(out), *FAST), "bad.png", fragment)
    assert not out.exists()


def test_missing_file_bad_flags_and_impossible_sizes(scene_path, stripes_path, tmp_path):
    out = tmp_path / "o.png"
    one_clear_error(run_cli("optimize", str(tmp_path / "none.jpg"), str(stripes_path), "-o", str(out)), "no such file")
    one_clear_error(run_cli("optimize", str(scene_path), str(stripes_path), "-o", str(out), "--iterations", "many"), "--iterations")
    one_clear_error(run_cli("optimize", str(scene_path), str(stripes_path), "-o", str(out), "--preset", "vangogh"), "--preset")
    one_clear_error(run_cli("optimize", str(scene_path), str(stripes_path), "-o", str(out), "--size", "5", "--weights", "random"), "size 5")
    one_clear_error(run_cli("optimize", str(scene_path), str(stripes_path), "-o", str(out), "--style-layers", "relu7_1", "--weights", "random"), "relu7_1")
    one_clear_error(run_cli("optimize", str(scene_path), str(stripes_path), "-o", str(tmp_path / "o.gif")), "must end in")
    one_clear_error(run_cli("optimize", str(scene_path), str(stripes_path), "-o", str(scene_path)), "overwrite an input")
    assert not out.exists()


def test_wrong_weight_files_fail_cleanly(scene_path, stripes_path, tmp_path):
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"PK\x03\x04 not really")
    out = tmp_path / "o.png"
    one_clear_error(run_cli("optimize", str(scene_path), str(stripes_path), "-o", str(out), "--weights", str(junk)), "junk.pth")
    one_clear_error(run_cli("optimize", str(scene_path), str(stripes_path), "-o", str(out), "--weights", "vgg19"), "PAINTERLY_OFFLINE")
    assert not out.exists()


SMALL = ["--size", "32", "--weights", "random", "--quiet", "--content-layers", "relu2_1", "--style-layers", "relu1_1", "relu2_1"]


def test_optimize_takes_several_styles_a_folder_weights_masks_and_colour_modes(scene_path, tmp_path):
    styles = tmp_path / "styles"
    styles.mkdir()
    Image.new("RGB", (40, 40), (255, 0, 0)).save(styles / "a_red.png")
    Image.new("RGB", (40, 40), (0, 0, 255)).save(styles / "b_blue.png")
    scene = Image.open(scene_path)
    left = Image.new("L", scene.size, 0)
    left.paste(255, (0, 0, scene.width // 2, scene.height))
    left.save(tmp_path / "left.png")
    Image.eval(left, lambda v: 255 - v).save(tmp_path / "right.png")
    out = tmp_path / "out.png"
    result = run_cli("optimize", str(scene_path), str(styles), "-o", str(out), *SMALL, "--iterations", "3",
                     "--style-weights", "1", "3", "--mask", str(tmp_path / "left.png"), str(tmp_path / "right.png"),
                     "--preserve-color", "match", "--style-scale", "1.5", "--scales", "2")
    assert result.returncode == 0, result.stderr
    metadata = read_metadata(out)
    assert metadata["style"] == ["a_red.png", "b_blue.png"] and metadata["style_weights"] == [0.25, 0.75]
    assert metadata["masks"] == ["left.png", "right.png"]
    assert (metadata["preserve_color"], metadata["style_scale"], metadata["scales"]) == ("match", 1.5, 2)
    with Image.open(out) as image:
        assert image.size == (32, 21)


def test_optimize_resume_continues_a_saved_run(scene_path, stripes_path, tmp_path):
    adam = [*SMALL, "--optimizer", "adam", "--learning-rate", "20", "--init", "noise"]
    first, resumed, straight = tmp_path / "first.png", tmp_path / "resumed.png", tmp_path / "straight.png"
    assert run_cli("optimize", str(scene_path), str(stripes_path), "-o", str(first), *adam, "--iterations", "2",
                   "--save-every", "2").returncode == 0
    state = tmp_path / "first.state.pt"
    result = run_cli("optimize", str(scene_path), str(stripes_path), "-o", str(resumed), "--resume", str(state),
                     "--iterations", "4", "--quiet")
    assert result.returncode == 0, result.stderr
    assert run_cli("optimize", str(scene_path), str(stripes_path), "-o", str(straight), *adam, "--iterations", "4").returncode == 0
    assert Image.open(resumed).tobytes() == Image.open(straight).tobytes() != Image.open(first).tobytes()
    assert not list(tmp_path.glob("*.part"))


def test_optimize_bad_control_values_fail_cleanly(scene_path, stripes_path, tmp_path, capsys):
    out = tmp_path / "o.png"
    one_clear_error(run_cli("optimize", str(scene_path), str(stripes_path), str(stripes_path), "-o", str(out), *SMALL,
                            "--style-weights", "1", "2", "3"), "3 style weights given for 2 style images")
    Image.new("L", (20, 20)).save(tmp_path / "small_mask.png")
    (tmp_path / "empty").mkdir()
    for args, fragments in [
        (["--mask", str(tmp_path / "small_mask.png")], ["mask 1 is 20x20", "content's size"]),
        (["--style-scale", "-0.5"], ["--style-scale", "> 0"]),
        (["--scales", "2", "--iterations-per-scale", "5"], ["1 iterations_per_scale given for 2 scales"]),
    ]:
        code, stderr = run_in_process(capsys, "optimize", str(scene_path), str(stripes_path), "-o", str(out), *SMALL, *args)
        assert code == 2 and len(stderr.strip().splitlines()) == 1 and all(f in stderr for f in fragments), stderr
    code, stderr = run_in_process(capsys, "optimize", str(scene_path), str(tmp_path / "empty"), "-o", str(out))
    assert code == 2 and "style folder" in stderr and "has no images" in stderr
    assert not out.exists()


def test_demo_gallery_of_one_method_writes_that_sheet_only_and_names_its_weights(tmp_path, capsys):
    code, stderr = run_in_process(capsys, "demo", "--gallery", "adain", "-o", str(tmp_path), "--size", "32", "--quiet")
    assert code == 0, stderr
    sheet = tmp_path / "gallery_adain.jpg"
    assert sheet.is_file() and not (tmp_path / "gallery_optimize.jpg").exists()
    metadata = read_metadata(sheet)
    assert metadata["method"] == "adain" and metadata["weights"] == "random(seed=0) + bundled"
    assert len(metadata["photos"]) * len(metadata["paintings"]) == 12
    code, stderr = run_in_process(capsys, "demo", "--gallery", "watercolour", "-o", str(tmp_path))
    assert code == 2 and "invalid choice" in stderr


def test_demo_runs_offline(tmp_path):
    result = run_cli("demo", "-o", str(tmp_path / "demo"), "--iterations", "3", "--quiet")
    assert result.returncode == 0, result.stderr
    assert "seeded random" in result.stderr and "bundled decoder" in result.stderr
    assert "random-features profile" in result.stderr
    output = tmp_path / "demo" / "shipwreck_starry_night.png"
    assert output.is_file()
    adain = tmp_path / "demo" / "shipwreck_starry_night_adain.png"  # AdaIN runs offline too
    # Each method at its own default size: the bundled decoder paints blotches at optimisation's.
    assert max(Image.open(output).size) == 192 and max(Image.open(adain).size) == 512
    # The demo has no settings of its own for random weights: the library's profile decides.
    metadata = read_metadata(output)
    assert metadata["profile"] == "random-features" and metadata["iterations"] == 3
