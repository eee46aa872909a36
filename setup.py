"""ament_python package pcm_l2l_ros (build with colcon; see README)."""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "pcm_l2l_ros"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(include=[PACKAGE, PACKAGE + ".*"]),
    package_data={PACKAGE: ["models/*.npz", "models/*.json"]},
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + PACKAGE]),
        ("share/" + PACKAGE, ["package.xml"]),
        ("share/" + PACKAGE + "/launch", glob("launch/*.py")),
        ("share/" + PACKAGE + "/config", glob("config/*.yaml") + glob("config/*.rviz")),
        ("share/" + PACKAGE + "/urdf", glob("urdf/*.urdf")),
        ("share/" + PACKAGE + "/models", glob(PACKAGE + "/models/*.npz") + glob(PACKAGE + "/models/*.json")),
    ],
    install_requires=["setuptools"],
    zip_safe=False,
    maintainer="pcm_l2l_ros developers",
    maintainer_email="pcm-l2l@example.org",
    description="Learning-to-learn on simulated PCM in-memory computing, as ROS 2 nodes.",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "pcm-l2l = pcm_l2l_ros.cli:main",
            "controller_node = pcm_l2l_ros.nodes.controller_node:main",
            "sim_node = pcm_l2l_ros.nodes.sim_node:main",
            "vision_node = pcm_l2l_ros.nodes.vision_node:main",
        ],
    },
)
