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
