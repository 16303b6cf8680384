"""Reference parity of the plain CNNs: our plain10 teacher, trained by `train_chain` on a fixed synthetic
CIFAR-100-shaped task (5,000 train and 2,000 test images, 32×32×3, 100 classes) for 8 epochs at TAKD's recipe
(SGD lr 0.01 constant, momentum 0.9, wd 1e-4, batch 128, no augmentation), with the reference initialisation (the
default) and with the He initialisation kdstudy used before. Prints test accuracy per epoch for both.

The task: each class is a smooth random colour pattern (6×6 random colours, upsampled); an image is a randomly
shifted 32×32 crop of it at 30 % contrast under pixel noise of the same size — learnable, but only after some
epochs of picking the patterns out of the noise, which is where an initialisation shows.
Run: `python bench/fidelity.py` (about 5 minutes on 2 CPU cores; seconds on a GPU).
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from trainables import ChainConfig, train_chain
from trainables.data import DataBundle, Split
from trainables.data.datasets import channel_stats

CLASSES, SIZE = 100, 32
CONTRAST, NOISE = 0.3, 0.3


def synthetic_task(train: int = 5000, test: int = 2000, seed: int = 0) -> DataBundle:
    generator = torch.Generator().manual_seed(seed)
    patterns = F.interpolate(torch.rand(CLASSES, 3, 6, 6, generator=generator), size=(SIZE + 8, SIZE + 8),
                             mode="bilinear", align_corners=False)

    def images(n: int) -> Split:
        labels = torch.arange(n) % CLASSES
        labels = labels[torch.randperm(n, generator=generator)]
        shifts = torch.randint(0, 9, (n, 2), generator=generator)
        crops = torch.stack([patterns[c, :, dy:dy + SIZE, dx:dx + SIZE]
                             for c, (dy, dx) in zip(labels.tolist(), shifts.tolist())])
        noise = torch.randn(n, 3, SIZE, SIZE, generator=generator)
        x = (0.5 + CONTRAST * (crops - 0.5) + NOISE * noise).clamp(0, 1)
        return Split(x=(x * 255).round().to(torch.uint8), y=labels)

    train_split, test_split = images(train), images(test)
    mean, std = channel_stats(train_split.x)
    # The test images are the validation (and fit) split too: every epoch's val_acc is this bench's test accuracy.
    return DataBundle("synthetic-cifar100", train_split, test_split, test_split, test_split, CLASSES, 3, SIZE, mean,
                      std)


def curve(init: str, data: DataBundle, epochs: int, device: str) -> list[float]:
    cfg = ChainConfig(method="nokd", student="plain10", init=init, epochs=epochs, lr=0.01, lr_schedule="constant",
                      momentum=0.9, weight_decay=1e-4, batch_size=128, seed=0, device=device)
    events: list[dict] = []
    train_chain(cfg, report=events.append, data=data)
    return [e["val_acc"] for e in events if e["event"] == "epoch"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = synthetic_task()
    print(f"plain10 on a synthetic CIFAR-100-shaped task ({len(data.train)} train / {len(data.test)} test), "
          f"TAKD recipe, test accuracy (%) per epoch")
    print("init        " + " ".join(f"ep {e:>2}" for e in range(1, args.epochs + 1)) + "   seconds")
    for init, name in (("reference", "reference"), ("he", "he (old)")):
        started = time.perf_counter()
        accuracies = curve(init, data, args.epochs, args.device)
        cells = " ".join(f"{100 * a:5.1f}" for a in accuracies)
        print(f"{name:<11} {cells}   {time.perf_counter() - started:7.0f}")


if __name__ == "__main__":
    main()
