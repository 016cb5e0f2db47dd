"""Maps the top-level ``nodes/`` folder to the ``flowgraph.nodes`` package.

The node library lives beside the framework in the source tree but is installed as ``flowgraph.nodes``, so a
plain ``import nodes`` never resolves to it. setuptools needs the package list spelt out for such a mapping.
"""

from setuptools import find_packages, setup

framework = ["flowgraph", *(f"flowgraph.{p}" for p in find_packages("flowgraph"))]
library = ["flowgraph.nodes", *(f"flowgraph.nodes.{p}" for p in find_packages("nodes"))]
package_dir = {"flowgraph": "flowgraph", "flowgraph.nodes": "nodes"}
package_dir.update({p: p.replace("flowgraph.nodes", "nodes", 1).replace(".", "/") for p in library})

setup(packages=framework + library, package_dir=package_dir)
