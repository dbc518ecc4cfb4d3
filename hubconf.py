"""torch.hub entrypoints of the generative-audio model zoo.

Every entrypoint has the signature ``(pretrained=True, progress=True, device=None, checkpoint=None)``:

- ``pretrained``: load the release weights (``False``: random weights, no network access);
- ``progress``: show a download progress bar;
- ``device``: where to put the model (default: CUDA if available, else CPU);
- ``checkpoint``: a local path or URL that replaces the default release.

Environment: ``ZOO_MIRROR`` (a directory or base URL holding release files under their names) replaces the default
host; ``ZOO_OFFLINE=1`` never touches the network. Heavy modules are imported inside each entrypoint.
"""
dependencies = ["torch", "numpy", "tqdm", "requests", "safetensors"]


def diffwave_sc09(pretrained=True, progress=True, device=None, checkpoint=None):
    """DiffWave (Kong et al. 2021), unconditional 1-second spoken digits (SC09) at 16 kHz.

    The 24.1M-parameter WaveNet denoiser (36 layers, 256 channels, T = 200 linear steps) with the RF5/philsyn
    1M-step release weights (RF5/DiffWave-unconditional v0.1, ``diffwave_sc09_1M_steps.pt``).

    Returns an ``UnconditionalWaveDiffusion`` in eval mode:
    ``unconditional_generate(N, sampler='ddpm'|'ddim'|'dpm-solver++', steps=None, generator=None)`` -> ``[N, 16000]``
    float audio on CPU; ``denoiser(x [B,1,L], t [B]) -> eps [B,1,L]``; ``generate_from_latent(z)``, ``z2w(z)``,
    ``generate_from_w(w)``; ``sample_rate`` (16000) and ``num_samples`` (16000).

    Example::

        model = torch.hub.load('owner/repo', 'diffwave_sc09')
        audio = model.unconditional_generate(4, sampler='dpm-solver++', steps=20)   # [4, 16000]
        torchaudio.save('digit.wav', audio[:1], model.sample_rate)
    """
    from diffwave import build_diffwave, sc09_config
    from zoo.hub import load_model

    return load_model("diffwave_sc09", build_diffwave, sc09_config(), pretrained=pretrained, progress=progress,
                      device=device, checkpoint=checkpoint)


def _sashimi(name, pretrained, progress, device, checkpoint):
    from sashimi import build_sashimi, sc09_config
    from zoo.hub import load_model

    return load_model(name, build_sashimi, sc09_config(), pretrained=pretrained, progress=progress, device=device,
                      checkpoint=checkpoint)


_SASHIMI_DOC = """DiffWave with the SaShiMi (S4) U-Net backbone (Goel et al. 2022), unconditional SC09 digits at 16 kHz,
    RF5/DiffWave-unconditional release v0.2 after {steps} training steps (23.5M parameters, T = 200).

    Runs exactly on CPU and GPU: the S4 Cauchy kernel uses the CUDA extension, pykeops or pure PyTorch, whichever is
    available (``ZOO_CAUCHY_BACKEND`` forces one), and the 30 S4 convolution kernels are computed once per length
    and device in eval mode, then reused by every sampler step.

    Returns an ``UnconditionalWaveDiffusion`` with the same API as ``diffwave_sc09``:
    ``unconditional_generate(N, sampler=..., steps=...)`` -> ``[N, 16000]``, ``denoiser(x [B,1,L], t [B])``,
    ``generate_from_latent``, ``z2w``, ``generate_from_w``.

    Example::

        model = torch.hub.load('owner/repo', '{name}')
        audio = model.unconditional_generate(2, sampler='dpm-solver++', steps=20)   # [2, 16000]
        torchaudio.save('digit.wav', audio[:1], model.sample_rate)
    """


def sashimi_diffwave_500k_sc09(pretrained=True, progress=True, device=None, checkpoint=None):
    return _sashimi("sashimi_diffwave_500k_sc09", pretrained, progress, device, checkpoint)


def sashimi_diffwave_800k_sc09(pretrained=True, progress=True, device=None, checkpoint=None):
    return _sashimi("sashimi_diffwave_800k_sc09", pretrained, progress, device, checkpoint)


sashimi_diffwave_500k_sc09.__doc__ = _SASHIMI_DOC.format(steps="500k", name="sashimi_diffwave_500k_sc09")
sashimi_diffwave_800k_sc09.__doc__ = _SASHIMI_DOC.format(steps="800k", name="sashimi_diffwave_800k_sc09")


def diffsinger_decoder(pretrained=True, progress=True, device=None, checkpoint=None,
                       release="0228_opencpop_ds100_rel"):
    """DiffSinger (Liu et al. 2022) shallow-diffusion mel decoder: FastSpeech2 condition -> 80-bin log-mel, 24 kHz.

    The 15.1M-parameter WaveNet denoiser (DiffNet: 20 layers, 256 channels) with its Gaussian diffusion, from the
    MoonInTheRiver/DiffSinger releases (tag ``pretrain-model``). ``release`` picks one:
    ``'0228_opencpop_ds100_rel'`` (default; Opencpop, 100 steps, gaussian start),
    ``'0831_opencpop_ds1000'`` (Opencpop, 1000 steps, PNDM speedup 40) or
    ``'popcs_ds_beta6_offline_pmf0_1230'`` (PopCS, shallow diffusion from a FastSpeech2 mel, K_step 51).
    Hyperparameters come from the release's ``config.yaml``. ``checkpoint`` may be a release zip, a folder or a
    ``model_ckpt_steps_*.ckpt`` (its ``model.fs2.*`` weights are ignored). The Opencpop weights are for
    non-commercial use (dataset licence).

    Returns a ``DiffSingerDecoder`` in eval mode:
    ``model(condition [B,T,256], sampler='pndm'|'ddpm'|'ddim'|'dpm-solver++', speedup=None, steps=None,
    generator=None, x_start=None, depth=None)`` -> mel ``[B,T,80]`` (de-normalised log-mel);
    ``denoiser(spec [B,1,80,T], t [B], cond [B,256,T])`` -> ``[B,1,80,T]``; ``sample_rate`` (24000),
    ``hop_size`` (128), ``K_step``, ``schedule``.

    Example::

        model = torch.hub.load('owner/repo', 'diffsinger_decoder')
        mel = model(condition, sampler='pndm', speedup=10, generator=torch.Generator().manual_seed(0))
        mel = model(condition, x_start=fs2_mel, depth=60)   # shallow diffusion from a FastSpeech2 mel
    """
    from svs.diffsinger.release import load_decoder

    return load_decoder(release, pretrained=pretrained, progress=progress, device=device, checkpoint=checkpoint)


def diffsinger_hifigan(pretrained=True, progress=True, device=None, checkpoint=None):
    """DiffSinger's singing vocoder (HifiGAN-Singing with the hn-NSF harmonic source): 80-bin log-mel (+ f0) ->
    24 kHz waveform, hop 128.

    The HiFi-GAN generator of MoonInTheRiver/DiffSinger release ``0109_hifigan_bigpopcs_hop128.zip`` (tag
    ``pretrain-model``, ~70 h of singing, 280k steps); hyperparameters come from the release's ``config.yaml``.
    ``checkpoint`` may be a release zip, a folder (e.g. with the longer-trained ``model_ckpt_steps_1512000.ckpt``:
    the highest step is used) or a ``model_ckpt_steps_*.ckpt``.

    Returns a ``DiffSingerHifiGAN`` in eval mode:
    ``model(mel [B,T,80], f0=None [B,T] Hz, generator=None)`` -> ``[B, T*128]`` waveform in [-1, 1];
    ``generator`` (the upstream ``HifiGanGenerator``, ``[B,80,T]`` -> ``[B,1,T*128]``), ``sample_rate`` (24000),
    ``hop_size`` (128), ``use_nsf``.

    Example::

        decoder = torch.hub.load('owner/repo', 'diffsinger_decoder')
        vocoder = torch.hub.load('owner/repo', 'diffsinger_hifigan')
        wav = vocoder(decoder(condition), f0=f0)             # [B, T*128] at 24 kHz
    """
    from svs.diffsinger.vocoder import load_vocoder

    return load_vocoder(pretrained=pretrained, progress=progress, device=device, checkpoint=checkpoint)
