"""Image-folder datasets: crops, skipped files, seeded endless sampling, shards, held-out splits."""

from __future__ import annotations

from itertools import islice
from pathlib import Path

import pytest
import torch
from conftest import make_scene, make_stripes
from PIL import Image

from painterly.data import (
    ImageFolder,
    InfiniteSampler,
    Skipped,
    collate_skipping,
    find_images,
    infinite_loader,
    load_fixed,
    resize_shorter_side,
    split_files,
)
from painterly.errors import SettingsError


def write_folder(root: Path, *, good: int = 4, corrupt: int = 0) -> list[Path]:
    (root / "nested" / "deeper").mkdir(parents=True)
    paths = []
    for i in range(good):
        path = root / ("nested/deeper" if i % 2 else "") / f"image_{i}.png"
        make_scene(40 + 8 * i, 36, seed=i).save(path)
        paths.append(path)
    for i in range(corrupt):
        path = root / f"broken_{i}.jpg"
        path.write_bytes(b"\xff\xd8\xff\xe0 not really a JPEG" if i % 2 else b"")
        paths.append(path)
    (root / "notes.txt").write_text("not an image, and not listed")
    return paths


@pytest.mark.parametrize("size", [(97, 41), (41, 97), (33, 33), (1000, 17)])
def test_resize_shorter_side_never_comes_out_short(size):
    resized = resize_shorter_side(Image.new("RGB", size), 32)
    assert min(resized.size) == 32 or min(resized.size) == 33
    assert abs(resized.size[0] / resized.size[1] - size[0] / size[1]) < 0.1


def test_image_folder_finds_nested_images_and_crops(tmp_path):
    write_folder(tmp_path, good=4)
    files = find_images(tmp_path, what="content")
    assert len(files) == 4 and all(f.suffix == ".png" for f in files)
    dataset = ImageFolder(files, image_size=36, crop_size=32)
    random_crop = dataset[(3, 12345)]
    assert random_crop.shape == (3, 32, 32) and 0 <= random_crop.min() and random_crop.max() <= 1
    assert torch.equal(random_crop, dataset[(3, 12345)])  # the crop is a function of its seed
    crops = {tuple(dataset[(3, seed)].flatten()[:50].tolist()) for seed in range(6)}
    assert len(crops) > 1  # and differs between seeds


def test_corrupt_files_become_skipped_markers_that_collate_drops(tmp_path):
    paths = write_folder(tmp_path, good=2, corrupt=2)
    dataset = ImageFolder(find_images(tmp_path, what="style"), image_size=32, crop_size=32)
    items = [dataset[(i, 0)] for i in range(len(dataset))]
    skipped = [item for item in items if isinstance(item, Skipped)]
    assert sorted(Path(s.path).name for s in skipped) == ["broken_0.jpg", "broken_1.jpg"]
    assert all(s.reason for s in skipped)
    batch = collate_skipping(items)
    assert batch.images.shape == (2, 3, 32, 32) and len(batch.skipped) == 2
    assert collate_skipping(skipped).images is None
    fixed, fixed_skipped = load_fixed(dataset, 2)
    assert fixed.shape == (2, 3, 32, 32) and len(fixed_skipped) == 2
    assert {str(p) for p in paths[2:]} == {s.path for s in fixed_skipped}


def test_sampler_is_seeded_epoch_wise_and_resumes_mid_stream():
    sampler = InfiniteSampler(5, seed=3, stream=0)
    draws = list(islice(iter(sampler), 15))
    for epoch in range(3):  # each epoch is a permutation of the dataset
        assert sorted(index for index, _ in draws[5 * epoch : 5 * epoch + 5]) == list(range(5))
    assert draws[:5] != draws[5:10]
    assert draws == list(islice(iter(InfiniteSampler(5, seed=3, stream=0)), 15))
    assert list(islice(iter(InfiniteSampler(5, seed=3, stream=0, start=7)), 8)) == draws[7:]
    assert draws != list(islice(iter(InfiniteSampler(5, seed=4, stream=0)), 15))


def test_ranks_draw_disjoint_shards_that_cover_the_epoch():
    shards = [[i for i, _ in islice(iter(InfiniteSampler(7, seed=1, stream=0, rank=r, world_size=2)), 4)] for r in range(2)]
    assert set(shards[0]) | set(shards[1]) == set(range(7))
    assert len(set(shards[0]) & set(shards[1])) <= 1  # 7 files over 2 ranks: one is padded in twice


def test_split_files_holds_out_a_seeded_fraction():
    files = [Path(f"{i}.png") for i in range(10)]
    train, held = split_files(files, fraction=0.2, seed=0)
    assert len(held) == 2 and set(train) | set(held) == set(files) and not set(train) & set(held)
    assert split_files(files, fraction=0.2, seed=0) == (train, held)
    assert split_files(files, fraction=0.0, seed=0) == (files, [])
    assert len(split_files(files[:3], fraction=0.01, seed=0)[1]) == 1  # at least one when asked
    with pytest.raises(SettingsError):
        split_files(files[:1], fraction=0.5, seed=0)


def test_find_images_refuses_missing_and_empty_folders(tmp_path):
    with pytest.raises(SettingsError, match="does not exist"):
        find_images(tmp_path / "missing", what="content")
    with pytest.raises(SettingsError, match="no image files"):
        find_images(tmp_path, what="style")


def test_infinite_loader_batches_with_workers(tmp_path):
    write_folder(tmp_path, good=3, corrupt=1)
    make_stripes(48, 40).save(tmp_path / "stripes.png")
    dataset = ImageFolder(find_images(tmp_path, what="content"), image_size=32, crop_size=32)
    batches = list(islice(infinite_loader(dataset, batch_size=5, seed=0, stream=0, workers=1), 2))
    for batch in batches:  # 5 files, one unreadable: each epoch-sized batch holds 4 images and 1 skip
        assert batch.images.shape == (4, 3, 32, 32) and len(batch.skipped) == 1
