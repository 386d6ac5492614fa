"""minildm: Latent Diffusion Models (Rombach et al., CVPR 2022), built one readable piece at a time.

Glossary: one name per idea, used the same way in every module.

    x0, z0            a clean image / a clean latent (scaled by the first stage's scale_factor)
    x_t, z_t          the noisy version at timestep t: sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps
    t                 an integer training timestep 0 .. T-1 (0 = least noisy); fractional only inside samplers
    sigma             the same noise level in the variance-exploding scale: sqrt((1 - alpha_bar_t) / alpha_bar_t)
    schedule          a NoiseSchedule (betas and what follows from them; minildm.diffusion.schedules)
    objective         what the network predicts: "eps" (the paper), "x0" or "v"
    <a>_from_<b>      a conversion between predictions, always (x_t, t, b, schedule), e.g. x0_from_eps
    model_fn          the network as samplers see it: model_fn(x_t, t) -> its prediction (eps, x0 or v);
                      LatentDiffusion.prediction_fn builds one (with guidance)
    denoiser          D(x, sigma) -> estimate of x0 (minildm.diffusion.denoiser.make_denoiser wraps a model_fn)
    sampler, steps    a registered sampler name (minildm.diffusion.SAMPLER_NAMES) and its number of steps;
                      NFE = network evaluations, from the sampler's registry entry (model_calls)
    callback          called once per sampling step with {"step", "sigma", "x", "denoised"}
    generator         a torch.Generator for the random draws (noise is drawn on its device, then moved)
    progress          True shows a tqdm progress bar, False hides it (samplers, trainer, loaders)
    guidance_scale    classifier-free guidance strength s (1 = the conditional model, 0 = unconditional)
    guidance_rescale  phi of guidance rescale (Lin et al. 2023), 0 = off
    first stage       the frozen autoencoder (FirstStage protocol): encode_latent / decode_latent,
                      scale_factor (1/std of its latents), downsampling_factor f
    attn_resolutions  autoencoder: feature-map sizes in pixels that get self-attention (CompVis' name)
    attention_resolutions  UNet: downsampling rates ds (1, 2, 4, ...) that get attention (CompVis' name)
    num_groups / norm_num_groups  GroupNorm groups in the autoencoder / the UNet (the original configs' names)
    cond keys         conditions use the dataset item keys: "label", "caption", "boxes" + "box_labels", ...
    resolve(spec)     minildm.pretrained.resolve: a course checkpoint name, a run folder, a copied course
                      checkpoint folder or a config -> a model
    features          the named extractor (judge-shapes, pixels, inception-v3:PATH) whose features a sample metric
                      (FD, KID, precision/recall, ...) compares; every result names it (minildm.metrics.features)
"""

__version__ = "0.1.0"
