"""The reference PyTorch CycleGAN training step, timed on this machine.

    pip install torch==2.13.0        # not a project requirement; only this benchmark uses it
    python -m benchmarks.reference_pytorch --sizes=64,128,256

Prints one JSON object: seconds per training step at batch 1, float32, per size. The network
and the step follow the official PyTorch CycleGAN (junyanz/pytorch-CycleGAN-and-pix2pix,
written here from its description, not copied): ResNet generator with 9 blocks, reflection
padding and InstanceNorm2d without affine parameters, 70x70 PatchGAN (instance norm), LSGAN
losses, cycle weight 10, identity weight 0.5, Adam(2e-4, 0.5, 0.999); one step = update
both generators (discriminators frozen), then both discriminators on detached fakes (the
image pool, whose draws cost nothing, is left out). benchmarks/step_time.py compares our
step with these figures when they are given to it with --reference=FILE.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import torch
from torch import nn


def resnet_generator(filters: int = 64, blocks: int = 9) -> nn.Module:
    def conv_norm_relu(cin, cout, **kw):
        return [nn.Conv2d(cin, cout, bias=True, **kw), nn.InstanceNorm2d(cout), nn.ReLU(True)]

    class Block(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.body = nn.Sequential(
                nn.ReflectionPad2d(1), *conv_norm_relu(c, c, kernel_size=3),
                nn.ReflectionPad2d(1), nn.Conv2d(c, c, 3, bias=True), nn.InstanceNorm2d(c),
            )

        def forward(self, x):
            return x + self.body(x)

    f = filters
    layers = [nn.ReflectionPad2d(3), *conv_norm_relu(3, f, kernel_size=7)]
    layers += conv_norm_relu(f, 2 * f, kernel_size=3, stride=2, padding=1)
    layers += conv_norm_relu(2 * f, 4 * f, kernel_size=3, stride=2, padding=1)
    layers += [Block(4 * f) for _ in range(blocks)]
    for cin, cout in ((4 * f, 2 * f), (2 * f, f)):
        layers += [nn.ConvTranspose2d(cin, cout, 3, stride=2, padding=1, output_padding=1, bias=True),
                   nn.InstanceNorm2d(cout), nn.ReLU(True)]
    layers += [nn.ReflectionPad2d(3), nn.Conv2d(f, 3, 7), nn.Tanh()]
    return nn.Sequential(*layers)


def patchgan(filters: int = 64, n_layers: int = 3) -> nn.Module:
    f = filters
    layers = [nn.Conv2d(3, f, 4, stride=2, padding=1), nn.LeakyReLU(0.2, True)]
    mult = 1
    for i in range(1, n_layers):
        prev, mult = mult, min(2**i, 8)
        layers += [nn.Conv2d(f * prev, f * mult, 4, stride=2, padding=1), nn.InstanceNorm2d(f * mult),
                   nn.LeakyReLU(0.2, True)]
    prev, mult = mult, min(2**n_layers, 8)
    layers += [nn.Conv2d(f * prev, f * mult, 4, stride=1, padding=1), nn.InstanceNorm2d(f * mult),
               nn.LeakyReLU(0.2, True), nn.Conv2d(f * mult, 1, 4, stride=1, padding=1)]
    return nn.Sequential(*layers)


class ReferenceCycleGAN:
    def __init__(self):
        self.gen_g, self.gen_f = resnet_generator(), resnet_generator()
        self.disc_a, self.disc_b = patchgan(), patchgan()
        adam = lambda params: torch.optim.Adam(params, lr=2e-4, betas=(0.5, 0.999))
        self.opt_g = adam(list(self.gen_g.parameters()) + list(self.gen_f.parameters()))
        self.opt_d = adam(list(self.disc_a.parameters()) + list(self.disc_b.parameters()))

    def step(self, real_a, real_b):
        mse, l1 = nn.functional.mse_loss, nn.functional.l1_loss
        for d in (self.disc_a, self.disc_b):
            d.requires_grad_(False)
        self.opt_g.zero_grad()
        fake_b, fake_a = self.gen_g(real_a), self.gen_f(real_b)
        cycled_a, cycled_b = self.gen_f(fake_b), self.gen_g(fake_a)
        logits_b, logits_a = self.disc_b(fake_b), self.disc_a(fake_a)
        loss_g = (
            mse(logits_b, torch.ones_like(logits_b)) + mse(logits_a, torch.ones_like(logits_a))
            + 10.0 * (l1(cycled_a, real_a) + l1(cycled_b, real_b))
            + 10.0 * 0.5 * (l1(self.gen_f(real_a), real_a) + l1(self.gen_g(real_b), real_b))
        )
        loss_g.backward()
        self.opt_g.step()
        for d in (self.disc_a, self.disc_b):
            d.requires_grad_(True)
        self.opt_d.zero_grad()
        loss_d = 0.0
        for disc, real, fake in ((self.disc_a, real_a, fake_a), (self.disc_b, real_b, fake_b)):
            real_logits, fake_logits = disc(real), disc(fake.detach())
            loss_d = loss_d + 0.5 * (mse(real_logits, torch.ones_like(real_logits))
                                     + mse(fake_logits, torch.zeros_like(fake_logits)))
        loss_d.backward()
        self.opt_d.step()
        return float(loss_g), float(loss_d)


def time_size(model: ReferenceCycleGAN, size: int, steps: int, repeats: int) -> float:
    gen = torch.Generator().manual_seed(0)
    real_a = torch.rand(1, 3, size, size, generator=gen) * 2 - 1
    real_b = torch.rand(1, 3, size, size, generator=gen) * 2 - 1
    model.step(real_a, real_b)  # warm up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(steps):
            model.step(real_a, real_b)
        best = min(best, (time.perf_counter() - start) / steps)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="64,128,256")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    model = ReferenceCycleGAN()
    results = []
    for size in (int(s) for s in args.sizes.split(",")):
        seconds = time_size(model, size, args.steps, args.repeats)
        results.append({"size": size, "batch": 1, "precision": "float32", "s_per_step": round(seconds, 4),
                        "images_per_s": round(1 / seconds, 3)})
        print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    print(json.dumps({
        "benchmark": "reference_pytorch", "torch": torch.__version__, "machine": platform.machine(),
        "cpus": os.cpu_count(), "threads": args.threads, "mkldnn": torch.backends.mkldnn.is_available(),
        "results": results,
    }, indent=2))


if __name__ == "__main__":
    main()
