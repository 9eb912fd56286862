from setuptools import find_packages, setup

setup(
    name='paddle-psp',
    version='0.1.0',
    description='PSPNet and DeepLabV3 (dilated ResNet50/101, OS8) for PaddleSeg on Paddle 3',
    packages=find_packages(include=['paddle_psp', 'paddle_psp.*', 'paddle_psp_cli']),
    package_data={'paddle_psp': ['*.json', '*.yml'], 'paddle_psp.weights': ['zoo.json']},
    python_requires='>=3.9',
    # paddlepaddle (CPU) is pinned in requirements.txt, not here, so GPU users can
    # install paddlepaddle-gpu instead without pip pulling the CPU wheel back in.
    install_requires=[
        'paddleseg==2.8.0',
        'visualdl==2.5.3',
        'numpy<2',
        'pandas<3',
        'opencv-python<=4.6.0',
        'pyyaml',
        'scipy',
        'cityscapesscripts',
        'filelock',
        'tqdm',
    ],
    entry_points={'console_scripts': ['paddleseg=paddle_psp_cli:console_main']},
)
