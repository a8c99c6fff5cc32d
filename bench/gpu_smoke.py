"""One short, self-contained GPU check of the paper profile (configs/paper.yaml); under 5 minutes on one H100.

    python bench/gpu_smoke.py [--compile] [--json OUT]

1. One epoch of the defended ResNet18 (lambda_n = 1, lambda_a = 10) at 224 px through the pipeline's own
   ``train_model`` (bf16 autocast, channels_last, uint8 data on the GPU) on synthetic images, as many
   as ISIC's SKIN4 training split (3,522): samples / s.
2. A few defended VGG16 (full width, 4096-wide head) steps: samples / s.
3. One C&W-L2 batch on the trained ResNet18 surrogate (``run_attack``; 1 binary-search step of 100
   iterations, abort_early off so every iteration runs): image-iterations / s.
Then the wall time of the whole paper profile, extrapolated from these rates and the profile's job list
(an upper bound for C&W, which aborts early in practice). Exits with a clear message without CUDA.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# The paper profile's work (configs/paper.yaml): split sizes and models per dataset.
ISIC_TRAIN, ISIC_TEST = 3522, 704          # 4,226 SKIN4 images split about 5:1
RSNA_TRAIN, RSNA_TEST = 21000, 5684
EPOCHS, CW_ITERS = 80, 5 * 1000
RESNET_MODELS = {"isic2018": 8 + 1, "rsna": 4 + 1}   # table rows + the surrogate
VGG_MODELS = 4


def synthetic_split(n: int, size: int, classes: int, seed: int):
    from pipeline_src.data.prepare import Split

    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, classes, (n,), generator=g)
    images = torch.randint(0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8)
    images[:, 0] = (images[:, 0] // 2 + labels[:, None, None].to(torch.uint8) * 40)  # a learnable cue
    return Split(images=images, labels=labels, classes=[f"c{i}" for i in range(classes)])


def train_config(arch: str, compile_: bool, epochs: int = 1):
    from pipeline_src.config import TrainConfig

    return TrainConfig(arch=arch, lambda_n=1.0, lambda_a=10.0, seed=0, epochs=epochs, batch_size=64, lr=0.01,
                       momentum=0.9, weight_decay=1e-4, lr_milestones=(), lr_gamma=0.1, noise_sigma=0.2,
                       noisy_copies=1, undefended_noisy_ce=False, neighbor_distance="rms",
                       neighbor_detach_clean=False, reconstruction_distance="rms", reconstruct="both",
                       decoder_stage="layer1" if arch == "resnet18" else "block2", decoder_activation="sigmoid",
                       vgg_head="auto", vgg_width=1.0, vgg_batch_norm=True, pretrained=False, threads=8,
                       compile=compile_ or None)


def vgg_rate(compile_: bool, steps: int = 20) -> float:
    """Defended VGG16 samples / s over ``steps`` steps after 3 warm-up steps."""
    from pipeline_src.device import autocast, normalise_u8, place_model, setup_gpu
    from pipeline_src.models import build_model
    from pipeline_src.train import model_spec, train_step

    setup_gpu()
    cfg = train_config("vgg16", compile_)
    data = synthetic_split(64, 224, 4, 1)
    device = torch.device("cuda")
    model = place_model(build_model(model_spec(cfg, data)), device).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    gen = torch.Generator(device=device).manual_seed(0)
    x_u8, y = data.images.to(device), data.labels.to(device)
    for i in range(3 + steps):
        if i == 3:
            torch.cuda.synchronize()
            t0 = time.perf_counter()
        with autocast(device):
            loss = train_step(model, normalise_u8(x_u8), y, cfg, gen)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    torch.cuda.synchronize()
    return steps * 64 / (time.perf_counter() - t0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compile", action="store_true", help="torch.compile the training forward passes")
    parser.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("gpu_smoke: no CUDA device is visible to torch (torch.cuda.is_available() is False); run it on a "
              "machine with an NVIDIA GPU and a CUDA build of torch. Nothing was measured.", file=sys.stderr)
        return 2
    from pipeline_src.attacks import run_attack
    from pipeline_src.checkpoints import load_model
    from pipeline_src.device import compute_device, inference_model
    from pipeline_src.train import train_model

    t_start = time.perf_counter()
    name = torch.cuda.get_device_name(0)
    print(f"device: {name}, torch {torch.__version__}, compile={args.compile}", flush=True)
    train = synthetic_split(ISIC_TRAIN, 224, 4, 0)
    test = synthetic_split(ISIC_TEST, 224, 4, 2)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "resnet18.pt"
        # warm-up epoch on a slice (cuDNN autotuning, compilation), then the timed epoch
        train_model(train_config("resnet18", args.compile), synthetic_split(640, 224, 4, 3), test,
                    Path(tmp) / "warm.pt")
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        train_model(train_config("resnet18", args.compile), train, test, out)
        torch.cuda.synchronize()
        epoch_s = time.perf_counter() - t0
        resnet_rate = ISIC_TRAIN / epoch_s  # includes the per-epoch test-set evaluation, as in the pipeline
        print(f"defended ResNet18 epoch, {ISIC_TRAIN} images at 224 px: {epoch_s:.1f} s = {resnet_rate:.0f} samples/s",
              flush=True)
        vgg = vgg_rate(args.compile)
        print(f"defended VGG16 (full width) steps: {vgg:.0f} samples/s", flush=True)
        model = inference_model(load_model(out), compute_device())
        for p in model.parameters():
            p.requires_grad_(False)
        batch, iters = 256, 100
        x = test.float_images(slice(0, batch))
        y = test.labels[:batch]
        run_attack(model, x[:32], y[:32], "cw", binary_search_steps=1, steps=5, batch_size=32)  # warm-up
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        _, stats = run_attack(model, x, y, "cw", binary_search_steps=1, steps=iters, abort_early=False,
                              batch_size=batch)
        torch.cuda.synchronize()
        cw_rate = batch * iters / (time.perf_counter() - t0)
        print(f"C&W-L2 batch {batch} x {iters} iterations: {cw_rate:.0f} image-iterations/s "
              f"(success {stats['cw_success_rate']:.2f})", flush=True)

    train_h = EPOCHS * (RESNET_MODELS["isic2018"] * ISIC_TRAIN + RESNET_MODELS["rsna"] * RSNA_TRAIN) / resnet_rate
    train_h = (train_h + EPOCHS * VGG_MODELS * ISIC_TRAIN / vgg) / 3600
    cw_h = (ISIC_TEST + RSNA_TEST) * CW_ITERS / cw_rate / 3600   # every iteration run: an upper bound
    other_h = 0.05 * (train_h + cw_h)  # I-FGSM/FGSM, evaluation, preparation: a few percent (estimate)
    total_h = train_h + cw_h + other_h
    figures = {"device": name, "compile": args.compile, "resnet18_defended_samples_per_s": resnet_rate,
               "vgg16_defended_samples_per_s": vgg, "cw_image_iterations_per_s": cw_rate,
               "paper_profile_hours": {"training": train_h, "cw_upper_bound": cw_h, "other_estimate": other_h,
                                       "total": total_h},
               "smoke_wall_s": time.perf_counter() - t_start}
    print(f"paper profile, extrapolated: training {train_h:.2f} h + C&W <= {cw_h:.2f} h + other ~{other_h:.2f} h "
          f"= {total_h:.2f} h on one {name} (goal: <= 6 h); this check took {figures['smoke_wall_s']:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
