"""tensorflow-datasets builders: the authors' folders, COCO category pairs, procedural shapes."""

# The datasets a config may name (config.dataset); builders.prepare has one preparer per name.
DATASETS = ("shapes", "folder", "coco")
