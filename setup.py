"""Installs tfgen: likelihood-based deep generative models in TensorFlow/Keras 3."""

import setuptools

setuptools.setup(
    name="tfgen",
    version="0.1.0",
    description="A TensorFlow/Keras zoo of likelihood-based deep generative models for images.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=setuptools.find_packages(include=["tfgen", "tfgen.*"]),
    # The presets (tfgen/presets/NAME/card.json and weights.npz, docs/presets.md) ship with the
    # package; all together within 30 MB.
    package_data={"tfgen.presets": ["*/card.json", "*/weights.npz"]},
    python_requires=">=3.10,<3.13",
    install_requires=[
        "tensorflow>=2.21,<2.22",
        "keras>=3.10,<4",
        "tensorflow-probability>=0.25,<0.26",
        # TFP refuses to import without tf-keras, although tfgen never uses it.
        "tf-keras>=2.21,<2.22",
        "tensorflow-datasets>=4.9.9,<5",
        # tensorflow-datasets imports it at run time without declaring it.
        "importlib_resources>=6",
        "keras-tuner>=1.4.7,<1.5",
        # keras-tuner's Bayesian oracle (tfgen-tune --tuner=bayesian) needs both, and its own
        # [bayesian] extra leaves them unpinned.
        "scipy>=1.13,<2",
        "scikit-learn>=1.5,<2",
        "tensorboard>=2.20,<3",
        "absl-py>=2.1,<3",
        "ml-collections>=1.0,<2",
        "numpy>=1.26,<3",
        # tfgen-vsc-study plot draws its figures with it.
        "matplotlib>=3.8,<4",
        # The `folder` data source decodes PNG, JPEG, BMP and GIF files with it.
        "Pillow>=10,<13",
    ],
    extras_require={
        # pytest-xdist: the suite runs in 2 processes (pytest.ini), one test file each at a time.
        "test": ["pytest>=8,<10", "pytest-xdist>=3.5,<4"],
    },
    entry_points={
        "console_scripts": [
            "tfgen-train=tfgen.apps.train:run",
            "tfgen-evaluate=tfgen.apps.evaluate:run",
            "tfgen-sample=tfgen.apps.sample:run",
            "tfgen-export=tfgen.apps.export:run",
            "tfgen-tune=tfgen.apps.tune:run",
            "tfgen-style=tfgen.apps.style:run",
            "tfgen-cppn=tfgen.apps.cppn:run",
            "tfgen-reproduce=tfgen.apps.reproduce:run",
            "tfgen-vsc-study=tfgen.apps.vsc_study:run",
            "tfgen-presets=tfgen.apps.presets:run",
        ],
    },
)
