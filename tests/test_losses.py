"""The losses against values computed by hand on tiny tensors (paper eqs. 1-3)."""
import math

import pytest
import torch

from pipeline_src.losses import (classification_loss, neighbor_loss, per_sample_distance, reconstruction_loss,
                                 total_loss, uniform_noise)


def test_neighbor_loss_l2_is_mean_of_per_sample_norms():
    f_clean = torch.tensor([[0.0, 0.0], [1.0, 1.0]]).view(2, 2, 1, 1)
    f_noisy = torch.tensor([[3.0, 4.0], [1.0, 1.0]]).view(2, 2, 1, 1)
    # ||(3,4)|| = 5 and 0 -> mean 2.5
    assert neighbor_loss(f_clean, f_noisy, "l2").item() == pytest.approx(2.5)
    # rms divides each norm by sqrt(dim = 2)
    assert neighbor_loss(f_clean, f_noisy, "rms").item() == pytest.approx(2.5 / math.sqrt(2))


def test_neighbor_loss_mse_pooled_is_authors_variant():
    f_clean = torch.zeros(1, 2, 2, 2)
    f_noisy = torch.tensor([1.0, 3.0, 1.0, 3.0, 0.0, 0.0, 0.0, 4.0]).view(1, 2, 2, 2)
    # pooled: channel means (2, 1) vs (0, 0) -> mse = (4 + 1) / 2
    assert neighbor_loss(f_clean, f_noisy, "mse_pooled").item() == pytest.approx(2.5)


def test_neighbor_loss_with_several_noisy_copies_averages_pairs():
    f_clean = torch.zeros(1, 1, 1, 2)
    f_noisy = torch.tensor([[3.0, 4.0], [6.0, 8.0]]).view(2, 1, 1, 2)  # two copies of the one image
    assert neighbor_loss(f_clean, f_noisy, "l2").item() == pytest.approx((5 + 10) / 2)


def test_neighbor_loss_detach_clean_stops_gradient_to_clean_branch():
    f_clean = torch.ones(2, 3, 1, 1, requires_grad=True)
    f_noisy = torch.zeros(2, 3, 1, 1, requires_grad=True)
    neighbor_loss(f_clean, f_noisy, "l2", detach_clean=True).backward()
    assert f_clean.grad is None and f_noisy.grad is not None
    f_clean2 = torch.ones(2, 3, 1, 1, requires_grad=True)
    neighbor_loss(f_clean2, torch.zeros(2, 3, 1, 1), "l2").backward()
    assert f_clean2.grad is not None and f_clean2.grad.abs().sum() > 0


def test_reconstruction_loss_targets_the_clean_image_for_both_terms():
    x = torch.zeros(1, 1, 2, 2)
    recon_clean = torch.full((1, 1, 2, 2), 0.5)   # ||x - x_hat|| = sqrt(4 * 0.25) = 1
    recon_noisy = torch.full((1, 1, 2, 2), 1.0)   # ||x - x_hat'|| = sqrt(4) = 2
    assert reconstruction_loss(x, recon_clean, recon_noisy, "l2").item() == pytest.approx(3.0)
    assert reconstruction_loss(x, recon_clean, recon_noisy, "rms").item() == pytest.approx(1.5)
    # the authors' variant reconstructs only the noisy copy, with MSE
    assert reconstruction_loss(x, None, recon_noisy, "mse").item() == pytest.approx(1.0)


def test_classification_loss_covers_clean_and_noisy_logits():
    logits = torch.tensor([[0.0, 0.0], [10.0, -10.0]])  # clean: uniform; noisy copy: confident and right
    labels = torch.tensor([0, 0])
    expected = (math.log(2) + math.log(1 + math.exp(-20))) / 2
    assert classification_loss(logits, labels).item() == pytest.approx(expected, rel=1e-5)


def test_total_loss_is_equation_3():
    l_c, l_n, l_a = torch.tensor(1.0), torch.tensor(2.0), torch.tensor(3.0)
    assert total_loss(l_c, l_n, l_a, 0.1, 10).item() == pytest.approx(1 + 0.2 + 30)


def test_uniform_noise_is_bounded_clipped_and_seeded():
    x = torch.full((2, 1, 8, 8), 0.5)
    x[0] = 0.0
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    a, b = uniform_noise(x, 0.2, g1), uniform_noise(x, 0.2, g2)
    assert torch.equal(a, b)
    assert (a - x).abs().max() <= 0.2 + 1e-6
    assert a.min() >= 0 and a.max() <= 1
    assert (a[1] != 0.5).any()


def test_unknown_distance_is_rejected():
    with pytest.raises(ValueError, match="unknown distance"):
        per_sample_distance(torch.zeros(1, 2), torch.zeros(1, 2), "l3")
