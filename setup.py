"""Packaging of paddle-psp.

The configs' source is ``configs/`` at the top of the repository; ``build_py`` copies it into the package
(``paddle_psp/configs/``), so that a wheel or ``pip install .`` carries them and ``--config NAME`` finds them.
The version is written once, in ``paddle_psp/__init__.py``.
"""
import os
import re
import shutil

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))


def read(*parts):
    with open(os.path.join(HERE, *parts), encoding='utf-8') as f:
        return f.read()


def version():
    """``__version__`` of paddle_psp/__init__.py, read without importing it."""
    return re.search(r"^__version__ = '([^']+)'", read('paddle_psp', '__init__.py'), re.M).group(1)


class BuildWithConfigs(build_py):
    """build_py that also copies the top-level configs/ into the built package as paddle_psp/configs/."""

    def run(self):
        super().run()
        target = os.path.join(self.build_lib, 'paddle_psp', 'configs')
        if os.path.isdir(target):
            shutil.rmtree(target)
        shutil.copytree(os.path.join(HERE, 'configs'), target,
                        ignore=shutil.ignore_patterns('*.pyc', '__pycache__'))


setup(
    name='paddle-psp',
    version=version(),
    description='PSPNet and DeepLabV3 (dilated ResNet50/101, OS8) for PaddleSeg on Paddle 3',
    long_description=read('README.md'),
    long_description_content_type='text/markdown',
    license='Apache-2.0',
    classifiers=[
        'Development Status :: 4 - Beta',
        'Intended Audience :: Science/Research',
        'Intended Audience :: Developers',
        'License :: OSI Approved :: Apache Software License',
        'Operating System :: POSIX :: Linux',
        'Programming Language :: Python :: 3',
        'Programming Language :: Python :: 3.11',
        'Topic :: Scientific/Engineering :: Artificial Intelligence',
        'Topic :: Scientific/Engineering :: Image Recognition',
    ],
    packages=find_packages(include=['paddle_psp', 'paddle_psp.*', 'paddle_psp_cli']),
    package_data={'paddle_psp': ['*.json', '*.yml'], 'paddle_psp.weights': ['zoo.json']},
    cmdclass={'build_py': BuildWithConfigs},
    # paddle_psp/core/lazy.py relies on the import semantics of the Python the tests run on (3.11).
    python_requires='>=3.11',
    # paddlepaddle (CPU) is not required here, so GPU users can install paddlepaddle-gpu instead without pip
    # pulling the CPU wheel back in; requirements.txt holds the exact versions the tests run with.
    install_requires=[
        'paddleseg>=2.8.0,<2.9',  # the type names and behaviours mapped in paddle_psp/config/upstream.py
        'visualdl>=2.5,<3',
        'numpy<2',
        'pandas<3',
        'opencv-python<=4.6.0',  # PaddleSeg 2.8's own bound
        'pyyaml>=5.1',
        'scipy',
        'filelock',
        'tqdm',
    ],
    extras_require={'prepare': ['cityscapesscripts']},
    entry_points={'console_scripts': ['paddleseg=paddle_psp_cli:console_main']},
)
