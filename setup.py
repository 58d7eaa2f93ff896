"""Package layout only (metadata is in pyproject.toml): the checkout's ``launch/`` ships as
``birds_tf.launch`` and ``gin/`` as ``birds_tf/configs/gin`` (data), so an installed birds-tf
adds no top-level ``launch`` package and its gin ``include 'gin/...'`` lines resolve from
``birds_tf/configs``. Tests, benchmarks and runs stay out of the wheel."""
from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["birds_tf", "birds_tf.*"])
    + ["birds_tf.launch", "birds_tf.configs.gin"],
    package_dir={"birds_tf.launch": "launch", "birds_tf.configs.gin": "gin"},
)
