"""Each preset against its recipe's own arithmetic, re-derived here from the recipe's code.

The references below are written from the recipes' documents (docs/presets.md says which
lines of each), not from painterly: they run a plain torch VGG-19 built as torchvision builds
it, with the same seeded random weights painterly's encoder loads, in the recipe's own pixel
space and channel order. Where a recipe uses Caffe's VGG (neural-style, Keras, the TensorFlow
blog), torchvision's network times the preset's ``feature_scale`` stands in for it, as it does
in painterly: that substitution is the one departure these tests cannot check.

Losses and gradients are compared in float64 at a fixed image, so any disagreement above
1e-5 is a difference in the formula, not rounding.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from painterly.encoder import deepest_layer, load_encoder
from painterly.gatys import GatysObjective, GatysSettings, get_preset, initial_image, optimize_image
from painterly.images import image_to_tensor
from painterly.weights import random_vgg19_state_dict

from conftest import make_scene, make_stripes

HEIGHT, WIDTH = 32, 48
# Rounded to float32 first, as painterly's encoder holds them: in float64 runs the last bits
# matter, because L-BFGS with clamping amplifies a 1e-8 difference to 1e-1 in 20 steps.
IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406]).double().view(1, 3, 1, 1)
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225]).double().view(1, 3, 1, 1)
CAFFE_MEAN_BGR = torch.tensor([103.939, 116.779, 123.68], dtype=torch.float64).view(1, 3, 1, 1)
#: torchvision's vgg19().features: channels of each conv, "M" for a 2x2 max pool.
VGG19_CONFIG = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M")
#: Index in that Sequential of the layers the recipes read.
INDEX = {"conv1_1": 0, "relu1_1": 1, "conv1_2": 2, "conv2_1": 5, "relu2_1": 6, "conv2_2": 7, "conv3_1": 10,
         "relu3_1": 11, "relu4_1": 20, "relu4_2": 22, "conv4_4": 25, "relu4_4": 26, "conv5_1": 28, "relu5_1": 29,
         "relu5_2": 31}


def torchvision_features(last_index: int, *, inplace: bool, dtype=torch.float64) -> nn.Sequential:
    """torchvision's ``vgg19().features[: last_index + 1]``, with painterly's seeded random weights."""
    modules: list[nn.Module] = []
    channels = 3
    for item in VGG19_CONFIG:
        if item == "M":
            modules.append(nn.MaxPool2d(2, 2))
        else:
            modules += [nn.Conv2d(channels, item, 3, padding=1), nn.ReLU(inplace=inplace)]
            channels = item
    net = nn.Sequential(*modules[: last_index + 1])
    state = {key.removeprefix("features."): value for key, value in random_vgg19_state_dict(0).items()}
    net.load_state_dict({key: value for key, value in state.items() if int(key.split(".")[0]) <= last_index})
    return net.to(dtype).requires_grad_(False)


def collect(net: nn.Sequential, x: torch.Tensor, names: list[str]) -> dict[str, torch.Tensor]:
    """The outputs of ``net``'s modules at the named layers (the tensor as it stands at the end)."""
    wanted = {INDEX[name]: name for name in names}
    out = {}
    for index, module in enumerate(net):
        x = module(x)
        if index in wanted:
            out[wanted[index]] = x
    return out


@pytest.fixture(scope="module")
def images() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(7)
    return {
        "content": image_to_tensor(make_scene(WIDTH, HEIGHT)).double(),
        "style": image_to_tensor(make_stripes(WIDTH, HEIGHT)).double(),
        # the fixed image the losses are compared at: the content, disturbed
        "image": (image_to_tensor(make_scene(WIDTH, HEIGHT)).double()
                  + 0.1 * torch.randn((1, 3, HEIGHT, WIDTH), generator=generator, dtype=torch.float64)).clamp(0, 1),
    }


def painterly_loss(settings: GatysSettings, images: dict[str, torch.Tensor]) -> tuple[dict[str, float], torch.Tensor]:
    """painterly's losses at ``images['image']`` and their gradient w.r.t. its optimised pixels."""
    encoder, _ = load_encoder("random", last_layer=deepest_layer(settings.content_layers + settings.style_layers), seed=0)
    objective = GatysObjective(encoder.double(), images["content"], [images["style"]], settings)
    pixels = (objective.pixel_scale * images["image"]).double().requires_grad_(True)
    losses = objective(pixels)
    losses["total"].backward()
    return {key: float(value.detach()) for key, value in losses.items()}, pixels.grad


def assert_close(ours: torch.Tensor | float, theirs: torch.Tensor | float, tolerance: float = 1e-5) -> None:
    ours, theirs = torch.as_tensor(ours, dtype=torch.float64), torch.as_tensor(theirs, dtype=torch.float64)
    error = float((ours - theirs).norm() / theirs.norm())
    assert error < tolerance, f"relative error {error:.3g}"


# ---------------------------------------------------------------------------------------------
# jcjohnson/neural-style (neural_style.lua): the gatys2016 preset.


def caffe_stand_in(net: nn.Sequential, x_caffe: torch.Tensor, names: list[str], *, scale: float) -> dict[str, torch.Tensor]:
    """Features of an image in Caffe's space (BGR x ``scale`` minus the mean pixel): the
    torchvision network on the same pixels, times ``scale`` x 0.226 (painterly's stand-in)."""
    rgb = ((x_caffe + CAFFE_MEAN_BGR) / scale).flip(1)
    features = collect(net, (rgb - IMAGENET_MEAN) / IMAGENET_STD, names)
    return {name: value * (scale * 0.226) for name, value in features.items()}


def neural_style_tv_gradient(x: torch.Tensor, strength: float) -> torch.Tensor:
    """neural-style's TVLoss:updateGradInput, which has no loss value of its own."""
    gradient = torch.zeros_like(x)
    x_diff = x[..., :-1, :-1] - x[..., :-1, 1:]
    y_diff = x[..., :-1, :-1] - x[..., 1:, :-1]
    gradient[..., :-1, :-1] += x_diff + y_diff
    gradient[..., :-1, 1:] -= x_diff
    gradient[..., 1:, :-1] -= y_diff
    return strength * gradient


def test_gatys2016_is_neural_style_as_it_runs(images):
    content_layers, style_layers = ["relu4_2"], ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"]
    net = torchvision_features(INDEX["relu5_1"], inplace=False)
    preprocess = lambda image: image.flip(1) * 256.0 - CAFFE_MEAN_BGR  # noqa: E731  (it scales by 256)
    features = lambda x: caffe_stand_in(net, x, content_layers + style_layers, scale=256.0)  # noqa: E731

    def gram(f: torch.Tensor) -> torch.Tensor:  # GramMatrix, then G:div(input:nElement())
        flat = f[0].reshape(f.shape[1], -1)
        return flat @ flat.T / f[0].numel()

    targets_content = features(preprocess(images["content"]))
    targets_style = {layer: gram(f) for layer, f in features(preprocess(images["style"])).items()}
    x = preprocess(images["image"]).requires_grad_(True)
    out = features(x)
    loss = sum(5.0 * F.mse_loss(out[layer], targets_content[layer]) for layer in content_layers) + sum(
        100.0 * F.mse_loss(gram(out[layer]), targets_style[layer]) for layer in style_layers)
    loss.backward()
    gradient = x.grad + neural_style_tv_gradient(x.detach(), 1e-3)

    losses, ours = painterly_loss(get_preset("gatys2016"), images)
    assert_close(losses["content"] + losses["style"], loss.item())  # neural-style's reported loss has no TV
    assert_close(ours.flip(1), gradient)  # painterly's pixels are RGB, Caffe's BGR; the mean is a shift


def test_gatys2016_starts_from_neural_styles_small_gaussian():
    start = initial_image(torch.zeros(1, 3, 64, 64), get_preset("gatys2016"), seed=0)
    in_caffe_space = start.flip(1) * 256.0 - CAFFE_MEAN_BGR.float()  # randn * 0.001 there
    assert abs(float(in_caffe_space.mean())) < 1e-4
    assert float(in_caffe_space.std()) == pytest.approx(0.001, rel=0.05)


# ---------------------------------------------------------------------------------------------
# The Keras example (keras-io examples/generative/neural_style_transfer.py).


def test_keras_is_the_keras_example(images):
    style_layers, content_layer = ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"], "relu5_2"
    net = torchvision_features(INDEX["relu5_2"], inplace=False)
    preprocess = lambda image: image.flip(1) * 255.0 - CAFFE_MEAN_BGR  # noqa: E731  vgg19.preprocess_input
    features = lambda x: caffe_stand_in(net, x, style_layers + [content_layer], scale=255.0)  # noqa: E731
    rows, cols = HEIGHT, WIDTH

    def gram(f: torch.Tensor) -> torch.Tensor:  # raw, unnormalised
        flat = f[0].reshape(f.shape[1], -1)
        return flat @ flat.T

    def style_loss(style: torch.Tensor, combination: torch.Tensor) -> torch.Tensor:
        return (gram(style) - gram(combination)).square().sum() / (4.0 * 3**2 * (rows * cols) ** 2)

    def total_variation_loss(x: torch.Tensor) -> torch.Tensor:
        a = (x[:, :, : rows - 1, : cols - 1] - x[:, :, 1:, : cols - 1]).square()
        b = (x[:, :, : rows - 1, : cols - 1] - x[:, :, : rows - 1, 1:]).square()
        return (a + b).pow(1.25).sum()

    base, style_reference = features(preprocess(images["content"])), features(preprocess(images["style"]))
    x = preprocess(images["image"]).requires_grad_(True)
    combination = features(x)
    loss = 2.5e-8 * (combination[content_layer] - base[content_layer]).square().sum()
    for layer in style_layers:
        loss = loss + (1e-6 / len(style_layers)) * style_loss(style_reference[layer], combination[layer])
    loss = loss + 1e-6 * total_variation_loss(x)
    loss.backward()

    losses, ours = painterly_loss(get_preset("keras"), images)
    assert_close(losses["total"], loss.item())
    assert_close(ours.flip(1), x.grad)


# ---------------------------------------------------------------------------------------------
# The TensorFlow blog (tensorflow/models research/nst_blogpost).


def test_tf_blog_is_the_blog_post(images):
    style_layers, content_layers = ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"], ["relu5_2"]
    net = torchvision_features(INDEX["relu5_2"], inplace=False)
    preprocess = lambda image: image.flip(1) * 255.0 - CAFFE_MEAN_BGR  # noqa: E731
    features = lambda x: caffe_stand_in(net, x, style_layers + content_layers, scale=255.0)  # noqa: E731

    def gram_matrix(f: torch.Tensor) -> torch.Tensor:  # reshape to (positions, channels); a^T a / n
        a = f[0].reshape(f.shape[1], -1).T
        return a.T @ a / a.shape[0]

    style_features = features(preprocess(images["style"]))
    gram_style = {layer: gram_matrix(style_features[layer]) for layer in style_layers}
    content_features = features(preprocess(images["content"]))
    x = preprocess(images["image"]).requires_grad_(True)
    out = features(x)
    style_score = sum((1 / len(style_layers)) * (gram_matrix(out[layer]) - gram_style[layer]).square().mean()
                      for layer in style_layers)
    content_score = sum((1 / len(content_layers)) * (out[layer] - content_features[layer]).square().mean()
                        for layer in content_layers)
    loss = 1e-2 * style_score + 1e3 * content_score
    loss.backward()

    losses, ours = painterly_loss(get_preset("tf-blog"), images)
    assert_close(losses["total"], loss.item())
    assert_close(ours.flip(1), x.grad)


def test_tf_blog_adam_adds_eps_before_bias_correction():
    """TensorFlow 1's Adam: lr_t = lr sqrt(1 - b2^t) / (1 - b1^t); x -= lr_t m / (sqrt(v) + eps)."""
    settings = get_preset("tf-blog")
    content, style = image_to_tensor(make_scene(WIDTH, HEIGHT)).double(), image_to_tensor(make_stripes(WIDTH, HEIGHT)).double()
    encoder, _ = load_encoder("random", last_layer="relu5_2", seed=0)
    encoder = encoder.double()  # float32 rounding, amplified where the gradient is tiny, would hide the formula
    objective = GatysObjective(encoder, content, [style], settings)
    x, m, v = (255.0 * content).clone(), torch.zeros_like(content), torch.zeros_like(content)
    (lr, (b1, b2), eps) = settings.learning_rate, settings.adam_betas, settings.adam_eps
    for t in range(1, 4):
        pixels = x.clone().requires_grad_(True)
        objective(pixels)["total"].backward()
        m, v = b1 * m + (1 - b1) * pixels.grad, b2 * v + (1 - b2) * pixels.grad**2
        x = (x - lr * (1 - b2**t) ** 0.5 / (1 - b1**t) * m / (v.sqrt() + eps)).clamp(0, 255)
    ours = optimize_image(content, [style], encoder=encoder, settings=settings.updated(iterations=3)).image
    assert (ours - x / 255.0).abs().max() < 1e-10
    torch_adam = optimize_image(content, [style], encoder=encoder, settings=settings.updated(iterations=3, adam_eps_hat=False))
    assert (torch_adam.image - x / 255.0).abs().max() > 1e-3


# ---------------------------------------------------------------------------------------------
# Dive into Deep Learning, "Neural Style Transfer" (PyTorch tab), as its code runs.

D2L_STYLE_LAYERS, D2L_CONTENT_LAYERS = [0, 5, 10, 19, 28], [25]


def d2l_extract_features(net: nn.Sequential, X: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    contents, styles = [], []
    for i in range(len(net)):
        X = net[i](X)
        if i in D2L_STYLE_LAYERS:
            styles.append(X)
        if i in D2L_CONTENT_LAYERS:
            contents.append(X)
    return contents, styles


def d2l_gram(X: torch.Tensor) -> torch.Tensor:
    num_channels, n = X.shape[1], X.numel() // X.shape[1]
    X = X.reshape((num_channels, n))
    return X @ X.T / (num_channels * n)


def d2l_compute_loss(X, contents_Y_hat, styles_Y_hat, contents_Y, styles_Y_gram):
    content_weight, style_weight, tv_weight = 1, 1e3, 10
    contents_l = [torch.square(Y_hat - Y.detach()).mean() * content_weight for Y_hat, Y in zip(contents_Y_hat, contents_Y)]
    styles_l = [torch.square(d2l_gram(Y_hat) - Y.detach()).mean() * style_weight
                for Y_hat, Y in zip(styles_Y_hat, styles_Y_gram)]
    tv_l = 0.5 * ((X[:, :, 1:, :] - X[:, :, :-1, :]).abs().mean() + (X[:, :, :, 1:] - X[:, :, :, :-1]).abs().mean())
    tv_l = tv_l * tv_weight
    return sum(10 * styles_l + contents_l + [tv_l])  # the list, repeated ten times, as d2l writes it


def d2l_setup(content: torch.Tensor, style: torch.Tensor, dtype):
    # d2l's net: features[: max(content_layers + style_layers) + 1], torchvision's in-place ReLUs
    net = torchvision_features(28, inplace=True, dtype=dtype)
    preprocess = lambda image: ((image.to(dtype) - IMAGENET_MEAN.to(dtype)) / IMAGENET_STD.to(dtype))  # noqa: E731
    contents_Y, _ = d2l_extract_features(net, preprocess(content))
    _, styles_Y = d2l_extract_features(net, preprocess(style))
    return net, preprocess, contents_Y, [d2l_gram(Y) for Y in styles_Y]


def test_d2l_is_d2l_as_it_runs(images):
    net, preprocess, contents_Y, styles_Y_gram = d2l_setup(images["content"], images["style"], torch.float64)
    X = preprocess(images["image"]).requires_grad_(True)
    contents_Y_hat, styles_Y_hat = d2l_extract_features(net, X)
    loss = d2l_compute_loss(X, contents_Y_hat, styles_Y_hat, contents_Y, styles_Y_gram)
    loss.backward()

    losses, ours = painterly_loss(get_preset("d2l"), images)
    assert_close(losses["total"], loss.item())
    assert_close(ours, X.grad)  # painterly's pixels are X plus the constant mean / std
    # the values the preset had before: the layers as written and the style weight without the repeat
    before = get_preset("d2l").updated(style_weight=1e3, content_layers=("conv4_4",),
                                       style_layers=("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1"))
    with pytest.raises(AssertionError):
        assert_close(painterly_loss(before, images)[0]["total"], loss.item())


def d2l_train(content: torch.Tensor, style: torch.Tensor, steps: int, dtype=torch.float64) -> torch.Tensor:
    """d2l's train(): Adam on the normalised image, StepLR(50, 0.8), no clamping; postprocess()."""
    net, preprocess, contents_Y, styles_Y_gram = d2l_setup(content, style, dtype)
    X = nn.Parameter(preprocess(content).clone())
    trainer = torch.optim.Adam([X], lr=0.3)
    scheduler = torch.optim.lr_scheduler.StepLR(trainer, 50, 0.8)
    for _ in range(steps):
        trainer.zero_grad()
        contents_Y_hat, styles_Y_hat = d2l_extract_features(net, X)
        d2l_compute_loss(X, contents_Y_hat, styles_Y_hat, contents_Y, styles_Y_gram).backward()
        trainer.step()
        scheduler.step()
    return torch.clamp(X.detach() * IMAGENET_STD.to(dtype) + IMAGENET_MEAN.to(dtype), 0, 1)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(10 * torch.log10(1 / (a.double() - b.double()).square().mean()))


def test_d2l_preset_follows_d2ls_loop_for_20_adam_steps():
    """In float64, so that the comparison sees the arithmetic and not float32's noise: Adam's
    early steps are about lr x sign(gradient), and in float32 the signs of near-zero gradient
    entries differ between any two orders of summation (d2l's loop against itself in float32
    and float64 differs by about 35 dB after 20 steps, docs/presets.md)."""
    content = image_to_tensor(make_scene(24, 16)).double()
    style = image_to_tensor(make_stripes(24, 16)).double()
    theirs = d2l_train(content, style, 20)
    encoder, _ = load_encoder("random", last_layer="conv5_1", seed=0)
    settings = get_preset("d2l").updated(iterations=20)
    ours = optimize_image(content, [style], encoder=encoder.double(), settings=settings).image
    assert psnr(theirs, ours) > 100


# ---------------------------------------------------------------------------------------------
# The PyTorch tutorial ("Neural Transfer Using PyTorch"), through the API.

TUTORIAL = GatysSettings(
    content_layers=("conv2_2",),  # its conv_4: the fourth convolution
    style_layers=("conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1"),  # conv_1 ... conv_5
    content_weight=1.0, style_weight=1e6, tv_weight=0.0, gram_normalization="channels_positions",
    feature_scale=1.0, pixel_scale=1.0, optimizer="lbfgs", init="content", clamp="closure", iterations=20,
)


def tutorial_run(content: torch.Tensor, style: torch.Tensor, steps: int) -> tuple[torch.Tensor, float, torch.Tensor]:
    """The tutorial's model (normalisation, then VGG to conv_5 with loss layers after it) and its
    run_style_transfer: LBFGS([input]) with its defaults, clamping in every closure call. Returns
    the image after ``steps`` optimizer.step() calls (20 evaluations each), and the loss and
    gradient at ``content``."""
    net = torchvision_features(INDEX["conv3_1"], inplace=False)
    names = ["conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1"]
    normalise = lambda image: (image - IMAGENET_MEAN) / IMAGENET_STD  # noqa: E731

    def gram_matrix(f: torch.Tensor) -> torch.Tensor:
        a, b, c, d = f.size()
        features = f.view(a * b, c * d)
        return features @ features.t() / (a * b * c * d)

    content_target = collect(net, normalise(content), ["conv2_2"])["conv2_2"]
    style_targets = {name: gram_matrix(f) for name, f in collect(net, normalise(style), names).items()}

    def loss_of(image: torch.Tensor) -> torch.Tensor:
        out = collect(net, normalise(image), names)
        style_score = sum(F.mse_loss(gram_matrix(out[name]), style_targets[name]) for name in names)
        return 1e6 * style_score + 1.0 * F.mse_loss(out["conv2_2"], content_target)

    at_content = content.clone().requires_grad_(True)
    loss_at_content = loss_of(at_content)
    loss_at_content.backward()
    input_img = content.clone().requires_grad_(True)
    optimizer = torch.optim.LBFGS([input_img])

    def closure() -> torch.Tensor:
        with torch.no_grad():
            input_img.clamp_(0, 1)
        optimizer.zero_grad()
        loss = loss_of(input_img)
        loss.backward()
        return loss

    for _ in range(steps):
        optimizer.step(closure)
    with torch.no_grad():
        input_img.clamp_(0, 1)
    return input_img.detach(), loss_at_content.item(), at_content.grad


def test_the_pytorch_tutorial_through_the_api():
    content = image_to_tensor(make_scene(24, 16)).double()
    style = image_to_tensor(make_stripes(24, 16)).double()
    theirs, loss, gradient = tutorial_run(content, style, 1)
    losses, ours = painterly_loss(TUTORIAL, {"content": content, "style": style, "image": content})
    assert_close(losses["total"], loss)
    assert_close(ours, gradient)
    encoder, _ = load_encoder("random", last_layer="conv3_1", seed=0)
    result = optimize_image(content, [style], encoder=encoder.double(), settings=TUTORIAL)
    # one step of its L-BFGS (20 evaluations) is 20 of painterly's one-evaluation iterations
    assert (result.image - theirs).abs().max() < 1e-8
    unclamped = optimize_image(content, [style], encoder=encoder.double(), settings=TUTORIAL.updated(clamp="never"))
    assert (unclamped.image - theirs).abs().max() > 1e-4  # the clamp in the closure matters here
