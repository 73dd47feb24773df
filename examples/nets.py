"""The factory examples/byo-safetensors.toml names: a function returning the torch.nn.Module the
safetensors weights load into (strictly: every tensor must fit). Yours builds your network; this
one builds diffbench's own UNet in the configuration of the quick suite's eps model."""
from methods import UNet, UNetConfig


def make_network(base_channels: int = 32, channel_mult=(1, 2)):
    return UNet(UNetConfig(image_channels=1, image_size=28, base_channels=base_channels,
                           channel_mult=tuple(channel_mult), num_res_blocks=1))
