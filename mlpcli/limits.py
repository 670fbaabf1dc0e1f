"""Upper bounds on sizes and counts: generous for any real run, but finite, so that no config or
checkpoint can ask for 10**30 of anything. The memory budget (budget.py) then checks that a run within
them fits the machine."""

MAX_SIDE = 8192              # pixels on an image side (data.size, pixels.size, a checkpoint's image shape)
MAX_IMAGES = 1 << 31         # images in a dataset (data.limit; a checkpoint's step × batch size)
MAX_WIDTH = 1_000_000        # units in a hidden layer
MAX_LAYERS = 100             # hidden layers
MAX_COUNT = 1_000_000        # epochs, patience, step_every
MAX_CLASSES = 100_000        # classes of a dataset or a checkpoint
