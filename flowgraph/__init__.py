"""flowgraph: live video and computer-vision platforms from YAML graphs."""
