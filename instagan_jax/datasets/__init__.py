"""tensorflow-datasets builders: the authors' folders, COCO category pairs, procedural shapes."""
