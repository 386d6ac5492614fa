"""LatentDiffusion: frozen first stage, conditioning with dropout, training reduces loss, CFG sampling."""

from __future__ import annotations

import pytest
import torch

from minildm.diffusion import NoiseSchedule, diffusion_loss, q_sample
from minildm.ldm import LDM_SCHEDULE, LatentDiffusion, latent_diffusion_loss
from minildm.pretrained import resolve

TINY_UNET = dict(in_channels=3, out_channels=3, model_channels=16, channel_mult=[1, 2], num_res_blocks=1,
                 attention_resolutions=[2], num_head_channels=8, context_dim=16, norm_num_groups=8)
TINY_KL = {"target": "autoencoder_kl", "params": {"autoencoder": dict(
    ch=8, ch_mult=[1, 2], num_res_blocks=1, resolution=16, z_channels=3, embed_dim=3, num_groups=4),
    "loss": {"perceptual_weight": 0.0, "disc_weight": 0.0}}}
CLASS = {"type": "class", "num_classes": 4, "embed_dim": 16}


def _ldm(**kw) -> LatentDiffusion:
    torch.manual_seed(0)
    args = dict(unet=TINY_UNET, conditioner=CLASS, image_size=16)
    if "first_stage" not in kw:  # a config's first-stage spec, loaded as minildm.pretrained.build_model does
        args["first_stage"] = resolve(TINY_KL)
    return LatentDiffusion(**{**args, **kw})


def test_latent_shape_and_frozen_first_stage():
    ldm = _ldm()
    assert ldm.latent_shape == (3, 8, 8)
    assert all(not p.requires_grad for p in ldm.first_stage.parameters())
    trained = {id(p) for p in ldm.optimizer_groups()["model"]}
    assert not any(id(p) in trained for p in ldm.first_stage.parameters())
    assert all(id(p) in trained for p in ldm.unet.parameters())
    ldm.train()
    assert not ldm.first_stage.training


def test_pixel_space_is_the_same_class_with_identity_first_stage():
    ldm = _ldm(first_stage=None)
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    assert ldm.latent_shape == (3, 16, 16)
    assert torch.equal(ldm.encode(x), x)


def test_training_step_is_eq3_eps_loss():
    ldm = _ldm(cond_drop_prob=0.0)
    batch = {"image": torch.rand(4, 3, 16, 16) * 2 - 1, "label": torch.tensor([0, 1, 2, 3])}
    torch.manual_seed(1)
    loss, logs = ldm.training_step(batch, "model", 0)
    # recompute by hand with the same random draws
    torch.manual_seed(1)
    z0 = ldm.encode(batch["image"])
    t = torch.randint(0, 1000, (4,))
    noise = torch.randn_like(z0)
    eps = ldm.unet(q_sample(z0, t, noise, ldm.schedule), t, context=ldm.conditioner.embedding(batch["label"])[:, None])
    assert loss.item() == pytest.approx(((eps - noise) ** 2).mean().item(), rel=1e-5)
    assert logs["loss"] == pytest.approx(loss.item())


def test_condition_dropout_rate():
    ldm = _ldm()
    labels = torch.zeros(20000, dtype=torch.long)
    dropped = ldm.conditioner.drop(labels, 0.1, generator=torch.Generator().manual_seed(0))
    assert (dropped == ldm.conditioner.null_id).float().mean().item() == pytest.approx(0.1, abs=0.01)


def test_training_reduces_loss():
    ldm = _ldm(first_stage=None, cond_drop_prob=0.1)
    g = torch.Generator().manual_seed(0)
    batch = {"image": torch.rand(8, 3, 16, 16, generator=g) * 2 - 1, "label": torch.arange(8) % 4}
    opt = torch.optim.AdamW(ldm.optimizer_groups()["model"], lr=2e-3)
    torch.manual_seed(0)
    losses = []
    for step in range(60):
        loss, _ = ldm.training_step(batch, "model", step)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-10:]) / 10 < 0.7 * sum(losses[:10]) / 10


def test_guidance_scale_one_is_the_conditional_model_and_cfg_mixes():
    ldm = _ldm().eval()
    labels = torch.tensor([1, 2])
    z = torch.randn(2, 3, 8, 8)
    t = torch.tensor([500.0, 500.0])
    cond = ldm.model_output(z, t, ldm.condition(labels))
    uncond = ldm.model_output(z, t, ldm.condition(torch.full_like(labels, 4)))
    assert torch.allclose(ldm.prediction_fn(labels, 1.0)(z, t), cond, atol=1e-6)
    assert torch.allclose(ldm.prediction_fn(labels, 3.0)(z, t), uncond + 3 * (cond - uncond), atol=1e-5)


def test_sample_shapes_and_determinism():
    ldm = _ldm().eval()
    a = ldm.sample(labels=torch.tensor([0, 3]), steps=3, generator=torch.Generator().manual_seed(0), progress=False)
    b = ldm.sample(labels=torch.tensor([0, 3]), steps=3, generator=torch.Generator().manual_seed(0), progress=False)
    assert a.shape == (2, 3, 16, 16) and a.min() >= -1 and a.max() <= 1
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="conditioner type"):
        _ldm(conditioner={"type": "telepathy"})


def test_cached_latents_give_the_same_loss_as_encoding_on_the_fly():
    ldm = _ldm(cond_drop_prob=0.0)
    images = torch.rand(6, 3, 16, 16) * 2 - 1
    dataset = [{"image": images[i], "label": i % 4} for i in range(6)]
    cached = ldm.encode_dataset(dataset, num_items=5, batch_size=2)
    assert len(cached) == 5 and cached[3]["label"].item() == 3
    assert torch.allclose(cached[1]["latent"], ldm.encode(images[1:2])[0], atol=1e-6)
    batch = {"image": images[:5], "label": torch.arange(5) % 4}
    torch.manual_seed(3)
    on_the_fly, _ = ldm.training_step(batch, "model", 0)
    torch.manual_seed(3)
    from_cache, _ = ldm.training_step({"latent": cached.latents, "label": batch["label"]}, "model", 0)
    assert torch.allclose(on_the_fly, from_cache, atol=1e-6)


def test_class_conditioner_checks_labels_at_sampling_and_drops_with_any_generator():
    from minildm.conditioning import ClassConditioner

    conditioner = ClassConditioner(num_classes=4, embed_dim=8).eval()
    with pytest.raises(ValueError, match=r"class labels must lie in \[0, 4\].*got \[0, 7\]"):
        conditioner(torch.tensor([0, 7]))
    assert conditioner(torch.tensor([0, 4]))["context"].shape == (2, 1, 8)  # 4 = the null class
    labels = torch.arange(4).repeat(500)
    dropped = conditioner.drop(labels, 0.25, generator=torch.Generator().manual_seed(0))
    again = conditioner.drop(labels, 0.25, generator=torch.Generator().manual_seed(0))
    assert torch.equal(dropped, again) and 0.2 < (dropped == 4).float().mean() < 0.3
    assert torch.equal(dropped[dropped != 4], labels[dropped != 4])


# --- Eq. 2 with its random draws made explicit -----------------------------------------------------
def _pixel_ldm(cond_drop_prob: float = 0.5, objective: str = "eps", weighting: str = "uniform") -> LatentDiffusion:
    torch.manual_seed(0)
    model = LatentDiffusion(unet=TINY_UNET, first_stage=None, image_size=8, objective=objective, loss_weighting=weighting,
                            conditioner={"type": "class", "num_classes": 4, "embed_dim": 16, "mode": "crossattn"},
                            cond_drop_prob=cond_drop_prob, sample_steps=3)
    with torch.no_grad():  # the UNet's zero-initialised output layers would make its output ignore the condition
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


@pytest.mark.parametrize("objective,weighting", [("eps", "uniform"), ("v", "min_snr")])
def test_latent_diffusion_loss_is_training_step_with_its_random_draws_made_explicit(objective, weighting):
    model = _pixel_ldm(objective=objective, weighting=weighting)
    z0 = torch.randn(6, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    labels = torch.tensor([0, 1, 2, 3, 0, 1])
    torch.manual_seed(5)
    expected, _ = model.training_step({"latent": z0, "label": labels}, "model", 0)
    torch.manual_seed(5)  # the same draws, in training_step's order: t, noise, dropout mask
    t = torch.randint(0, model.schedule.num_timesteps, (6,))
    noise = torch.randn_like(z0)
    drop_mask = torch.rand(labels.shape) < model.cond_drop_prob
    assert drop_mask.any() and not drop_mask.all()  # the seed exercises both kept and dropped labels
    actual = latent_diffusion_loss(model, z0, t, noise, labels, drop_mask)
    torch.testing.assert_close(actual, expected)
    no_drop = latent_diffusion_loss(model, z0, t, noise, labels, torch.zeros(6, dtype=torch.bool))
    assert not torch.allclose(no_drop, actual)  # dropping labels changes the conditioning


def test_latent_diffusion_loss_drop_mask_means_null_class():
    model = _pixel_ldm()
    z0, noise = torch.randn(4, 3, 8, 8), torch.randn(4, 3, 8, 8)
    t, labels = torch.tensor([10, 200, 500, 900]), torch.tensor([0, 1, 2, 3])
    dropped = latent_diffusion_loss(model, z0, t, noise, labels, torch.ones(4, dtype=torch.bool))
    null = latent_diffusion_loss(model, z0, t, noise, torch.full((4,), 4))
    torch.testing.assert_close(dropped, null)



def test_default_schedule_is_the_papers_ldm_schedule_not_stable_diffusions():
    ldm = _pixel_ldm()
    paper = NoiseSchedule.from_name(**LDM_SCHEDULE)
    torch.testing.assert_close(ldm.schedule.betas, paper.betas)
    assert ldm.schedule.betas[0].item() == pytest.approx(0.0015) and ldm.schedule.betas[-1].item() == pytest.approx(0.0195)
    sd = NoiseSchedule.from_name("scaled_linear")  # Stable Diffusion's 0.00085 .. 0.012
    assert sd.betas[0].item() == pytest.approx(0.00085) and not torch.allclose(sd.betas, paper.betas)


@pytest.mark.parametrize("config", ["ldm/shapes-txt2img", "ldm/shapes-layout", "ldm/shapes-sr4"])
def test_sample_grids_of_other_conditioners_use_the_first_training_items(config, tmp_path):
    from minildm.train import train_from_config

    trainer = train_from_config(config, ["train.steps=2", "train.batch_size=4", "train.sample_every=1",
                                         "train.num_samples=3", "data.cache_latents=8"],
                                out_dir=tmp_path, progress=False)
    model, dataset = trainer.model, trainer.dataset
    assert (tmp_path / "samples" / "step_0000001.png").is_file()
    keys = model.conditioner.keys
    assert set(model._grid_cond) == set(keys)
    if config.endswith("sr4"):  # made from the items' images as in training: their low-resolution versions
        assert model._grid_cond["low_res"].shape == (3, 3, 8, 8)
    else:  # captions (token ids once cached) or layouts of items 0, 1, 2
        for key in keys:
            assert torch.equal(model._grid_cond[key], torch.stack([dataset[i][key] for i in range(3)]))
    rng = torch.get_rng_state()
    model.on_fit_start(trainer)  # drawing the grid's conditions leaves the training's random stream alone
    assert torch.equal(torch.get_rng_state(), rng)


def test_a_conditioned_model_asks_for_its_condition():
    ldm = resolve("shapes-layout")
    with pytest.raises(ValueError, match=r"conditioned on boxes, box_labels: pass cond=\{\.\.\.\}"):
        ldm.sample(n=2, steps=2)
    with pytest.raises(ValueError, match=r"or labels="):
        resolve("shapes-ldm").sample(n=2, steps=2)
