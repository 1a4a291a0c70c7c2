"""Training HarmoVid: stage 1 pair synthesis from a manifest (``data``), the v-prediction objective with
condition dropout (``objective``), the Accelerate trainer (``trainer``), pickle-free checkpoints
(``checkpoint``), the tiny CPU VAE (``tiny_vae``) and the held-out LUT-pair evaluation (``evaluate``).

    from comfy_harmovid.train.trainer import TrainConfig, train
    train(TrainConfig.from_file("tiny", manifest="my.yaml", vae="vae.safetensors", output_dir="runs/x"))

See docs/training.md.
"""
