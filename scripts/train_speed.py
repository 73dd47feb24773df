"""Measure UNet training throughput (images/s) on this machine under PyTorch's speed options.

Usage: python scripts/train_speed.py [--steps 6] [--compile]
Prints one line per configuration; the README quotes its output.
"""
import argparse
import contextlib
import time

import torch

from methods import UNet, UNetConfig
from methods.ddpm import ddpm_eps_loss


def images_per_second(config, batch_size, steps, channels_last=False, bf16=False, compile=False):
    torch.manual_seed(0)
    net = UNet(config)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    model = torch.compile(net) if compile else net
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    x0 = torch.randn(batch_size, config.image_channels, config.image_size, config.image_size)
    if channels_last:
        x0 = x0.contiguous(memory_format=torch.channels_last)

    def step():
        autocast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
        with autocast:
            loss = ddpm_eps_loss(model, x0, generator)
        optimizer.zero_grad(set_to_none=True)
        loss.float().backward()
        optimizer.step()

    for _ in range(3):  # warm-up (and compilation)
        step()
    began = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * batch_size / (time.perf_counter() - began)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--compile", action="store_true", help="also try torch.compile")
    args = parser.parse_args()
    config = UNetConfig(base_channels=32, channel_mult=(1, 2))
    options = [dict(), dict(channels_last=True), dict(bf16=True), dict(bf16=True, channels_last=True)]
    if args.compile:
        options += [dict(compile=True), dict(compile=True, bf16=True)]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch_size}")
    for option in options:
        rate = images_per_second(config, args.batch_size, args.steps, **option)
        print(f"{', '.join(k for k in option) or 'fp32 baseline':32s} {rate:7.1f} images/s", flush=True)


if __name__ == "__main__":
    main()
